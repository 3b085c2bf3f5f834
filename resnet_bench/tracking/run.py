"""One claimed run's logging: epochs through a writer thread, so training goes on while the
store is away, and the dataset input, retried when a concurrent run inserts it first."""

from __future__ import annotations

import json
import queue
import tempfile
import threading
import time
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag

from ..errors import StoreUnavailable
from ..schema import FAILED


def _duplicate_key(e: Exception) -> bool:
    """A database's unique-key violation, as SQLite, PostgreSQL and MySQL word it."""
    text = str(e).lower()
    return any(k in text for k in ("unique constraint", "integrityerror", "duplicate key", "duplicate entry"))


class TrackedRun:
    """The logging calls of one claimed run (see :meth:`.store.Store.tracked_run`)."""

    def __init__(self, store, run_id: str):
        self.store, self.run_id = store, run_id
        self.status = FAILED  # until the run's block completes
        self.reason: str | None = None
        self.started = time.time()
        self.seconds = 0.0
        self.finishers: list = []  # called at the end whatever the status (artifacts of what was done)
        self._epochs: queue.Queue = queue.Queue()
        self.writer_error: Exception | None = None
        self._writer = threading.Thread(target=self._write_epochs, name="epoch-writer", daemon=True)
        self._writer.start()

    def log_params(self, params: dict) -> None:
        self.store.log_params(self.run_id, params)

    def log_epoch(self, row: dict) -> None:
        """Queue an epoch for the writer thread: training goes on while the store is away, and
        the epochs are written in order once it answers. Raises the writer's error, if it gave
        up, so a run whose epochs cannot be tracked stops at the next epoch."""
        if self.writer_error is not None:
            raise self.writer_error
        self._epochs.put(row)

    def _write_epochs(self) -> None:
        while True:
            row = self._epochs.get()
            try:
                if row is not None and self.writer_error is None:
                    self.store.log_epoch(self.run_id, row)
            except Exception as e:  # StoreUnavailable past the patience, or what the store refused
                self.writer_error = e if isinstance(e, StoreUnavailable) else StoreUnavailable(f"epoch not logged: {e}")
            finally:
                self._epochs.task_done()
            if row is None:
                return

    def flush(self) -> bool:
        """Wait until every queued epoch is written (the writer's patience bounds the wait);
        False when the writer gave up."""
        self._epochs.put(None)
        self._writer.join()
        return self.writer_error is None

    def log_layers(self, values: dict[str, float]) -> None:
        self.store.log_layers(self.run_id, values)

    def log_text(self, text: str, name: str) -> None:
        self.store.log_text(self.run_id, text, name)

    def log_file(self, path: str) -> None:
        self.store.log_artifact(self.run_id, path)

    def log_weights(self, model) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.weights.h5"
            model.save_weights(path)
            self.log_file(str(path))

    def log_dataset(self, name: str, digest: str, source_type: str, source: dict, schema: dict, profile: dict) -> None:
        """An MLflow dataset input (the run's Datasets column in the UI), context "training"."""
        dataset = Dataset(name, digest, source_type, json.dumps(source), json.dumps(schema), json.dumps(profile))
        tags = [InputTag("mlflow.data.context", "training")]
        for attempt in range(3):
            try:
                self.store.log_inputs(self.run_id, [DatasetInput(dataset, tags)])
                return
            except Exception as e:
                # MLflow looks a dataset up, then inserts it if absent; two runs of one sweep
                # logging the same new dataset at the same moment (on a server, where requests
                # run in threads) can both insert, and the second hits the unique key. Once it
                # exists, a retry finds it and links it to this run.
                if not _duplicate_key(e) or attempt == 2:
                    raise
