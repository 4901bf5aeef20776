"""torchrun's static rendezvous (`--master-addr/--master-port/--node-rank`) on a store the launcher holds.

torch's `StaticTCPRendezvous` creates its own TCPStore (the server on node rank 0). The launcher
needs the store before the handler exists, for its job-wide restart counters, so node rank 0
opens the server itself (launch.py) and this handler only hands that store out: every round has
the same members, ranks are the node ranks, and the workers' bootstrap store is the same store at
MASTER_ADDR:MASTER_PORT under a per-attempt prefix (torch's agent-store mode).

Limits, as torch's: no elasticity (min = max nodes), no waiting nodes, closing is a no-op.
"""

from __future__ import annotations

from torch.distributed import PrefixStore, Store
from torch.distributed.elastic.rendezvous import RendezvousHandler, RendezvousInfo, RendezvousStoreInfo

BACKEND = "static"


class StaticRendezvousHandler(RendezvousHandler):
    def __init__(self, run_id: str, store: Store, rank: int, world_size: int, master: tuple[str, int]) -> None:
        self.run_id, self.store, self.rank, self.world_size = run_id, store, rank, world_size
        self.master = master

    def get_backend(self) -> str:
        return BACKEND

    @property
    def use_agent_store(self) -> bool:
        return True

    def next_rendezvous(self) -> RendezvousInfo:
        store = PrefixStore(self.run_id, self.store)
        return RendezvousInfo(store, self.rank, self.world_size, RendezvousStoreInfo(*self.master))

    def is_closed(self) -> bool:
        return False

    def set_closed(self) -> None:
        pass

    def num_nodes_waiting(self) -> int:
        return 0

    def get_run_id(self) -> str:
        return self.run_id

    def shutdown(self) -> bool:
        return True
