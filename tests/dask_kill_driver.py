"""Test harness: run `migrate ARGS...`, and SIGKILL this driver between GCS acknowledging a batch and its ledger commit.

The first ledger write (transfer.dispatch.LedgerBatch.flush) that holds at least $KILL_AT_DONE
acknowledged ('done') items writes their seqs to $KILL_NOTE and kills the process before the
commit. Nothing of this is in the product: the harness wraps the ledger write from outside.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from migrate.transfer import dispatch

_flush = dispatch.LedgerBatch.flush


def _flush_or_die(self) -> None:
    done = [row[-1] for row in self.final if row[0] == "done"]
    if len(done) >= int(os.environ["KILL_AT_DONE"]):
        Path(os.environ["KILL_NOTE"]).write_text(json.dumps(done))
        os.kill(os.getpid(), signal.SIGKILL)
    _flush(self)


dispatch.LedgerBatch.flush = _flush_or_die

if __name__ == "__main__":
    from migrate.cli import main

    sys.argv = ["migrate", *sys.argv[1:]]
    main()
