"""``--jobs 1``: one run at a time in this process."""

from __future__ import annotations

from ..scheduler import SweepContext


class InProcess:
    """The simplest pool, and the reference: ``--jobs N`` and Ray must give its numbers."""

    def __init__(self, ctx: SweepContext):
        self.ctx = ctx
        self._done: list[tuple[object, str]] = []
        ctx.task.prepare(ctx.cfg)

    def start_next(self, pending, label):
        if self._done:
            return None
        p = pending[0]
        tag = label(p)
        self.ctx.echo(f"{tag} {p.spec.name} seed {p.seed}: started")
        status = self.ctx.task.run(self.ctx, p.spec, p.seed, label=tag)
        self._done.append((p, status))
        return p

    def wait(self):
        done, self._done = self._done, []
        return done

    def busy(self) -> bool:
        return bool(self._done)

    def close(self, interrupted: bool = False) -> None:
        pass
