"""Multi-process settings of a run: what ``gendl train`` / ``gendl finetune`` pass to ``jax.distributed``."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Multi-process (multi-host) settings: ``jax.distributed.initialize`` before training.

    On a TPU pod or a SLURM / Open MPI / Kubernetes GPU cluster pass ``--distributed`` alone and
    jax discovers the coordinator and the process ids; elsewhere give all three values.
    """

    distributed: bool = False
    """Join a multi-process job (implied by --coordinator-address)."""
    coordinator_address: str | None = None
    """host:port of process 0's coordinator, e.g. localhost:12345."""
    num_processes: int | None = None
    process_id: int | None = None

    def initialize(self) -> None:
        if not (self.distributed or self.coordinator_address):
            return
        import jax

        given = {
            "coordinator_address": self.coordinator_address,
            "num_processes": self.num_processes,
            "process_id": self.process_id,
        }
        if self.coordinator_address and None in given.values():
            missing = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is None]
            raise ValueError(f"--coordinator-address needs {' and '.join(missing)} too")
        if self.num_processes is not None and not 0 <= (self.process_id or 0) < self.num_processes:
            raise ValueError(f"process_id must be in [0, {self.num_processes}), got {self.process_id}")
        jax.distributed.initialize(**{k: v for k, v in given.items() if v is not None})
