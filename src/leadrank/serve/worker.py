"""The micro-batching scorer: one worker thread owns the Scorer (it is not thread-safe).

Score requests that arrive within ``batch_wait_ms`` of each other are scored together, up to
``max_batch`` leads, and the results are routed back per request. On shutdown the worker
stops taking requests and finishes the queued and in-flight batches.
"""

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from fastapi import HTTPException

from leadrank.config import ID_COLUMN
from leadrank.crm import add_grades
from leadrank.explain import explain
from leadrank.inference import Scorer
from leadrank.settings import ServeSettings


@dataclass
class _Job:
    kind: Literal["score", "explain", "stop"]
    leads: list[dict[str, Any]]
    future: asyncio.Future | None = None
    top: int | None = None


class _Worker:
    """Owns the Scorer on one thread; merges score requests that arrive together."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.accepting = False
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leadrank-scorer")
        self._batches = self._leads = self._pending = 0

    async def start(self, model_dir: str | Path) -> None:
        self._scorer = await self._in_thread(lambda: Scorer.load(model_dir, self.settings.score))
        self._task = asyncio.create_task(self._run())
        self.accepting = True

    async def stop(self) -> None:
        """Take no more requests; finish every queued and in-flight one; release the thread."""
        self.accepting = False
        self._queue.put_nowait(_Job("stop", []))
        await self._task
        self._thread.shutdown(wait=True)

    async def score(self, leads: list[dict[str, Any]]) -> pd.DataFrame:
        return await self._submit(_Job("score", leads))

    async def explain(self, lead: dict[str, Any], top: int) -> Any:
        return await self._submit(_Job("explain", [lead], top=top))

    def counters(self) -> dict[str, int]:
        """Requests waiting or being scored, micro-batches scored, leads scored."""
        return {"pending": self._pending, "batches": self._batches, "leads_scored": self._leads}

    async def _submit(self, job: _Job) -> Any:
        if not self.accepting:
            raise HTTPException(503, "the service is shutting down; retry in a moment or on another instance")
        job.future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(job)
        self._pending += 1
        try:
            return await job.future
        finally:
            self._pending -= 1

    async def _run(self) -> None:
        carry: _Job | None = None
        while True:
            job = carry or await self._queue.get()
            carry = None
            if job.kind == "stop":
                return
            if job.kind == "explain":
                await self._settle([job], lambda: [explain(self._scorer, job.leads[0], top=job.top)])
                continue
            await asyncio.sleep(self.settings.batch_wait_ms / 1000)
            batch, size = [job], len(job.leads)
            while not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt.kind != "score" or size + len(nxt.leads) > self.settings.max_batch:
                    carry = nxt
                    break
                batch.append(nxt)
                size += len(nxt.leads)
            await self._settle(batch, lambda: self._score_together(batch))

    def _score_together(self, batch: list[_Job]) -> list[pd.DataFrame]:
        """Runs on the worker thread: one Scorer call for all jobs, split back per job."""
        records = [lead for job in batch for lead in job.leads]
        table = pd.DataFrame.from_records(records)
        table[ID_COLUMN] = [str(i) for i in range(len(table))]  # ids may repeat across requests
        # each job's leads were validated on their own when the request arrived; the merged
        # table is not judged again (two valid requests may differ, e.g. in how as_of is written)
        point, pair = self._scorer.raw_scores(table)
        scorer = self._scorer
        scores = add_grades(scorer.to_scores(table[ID_COLUMN], point, pair), scorer.artifact.model_version, scorer.reference)
        parts, start = [], 0
        for job in batch:
            part = scores.iloc[start : start + len(job.leads)].reset_index(drop=True)
            part[ID_COLUMN] = [lead[ID_COLUMN] for lead in job.leads]
            parts.append(part)
            start += len(job.leads)
        self._batches += 1
        self._leads += len(records)
        return parts

    async def _settle(self, jobs: list[_Job], work: Callable[[], list[Any]]) -> None:
        """Run ``work`` on the worker thread; hand each job its result (or the error)."""
        try:
            results = await self._in_thread(work)
        except Exception as exc:  # every waiting request gets the error; the worker goes on
            results = [exc] * len(jobs)
        for job, result in zip(jobs, results, strict=True):
            if job.future is not None and not job.future.done():  # the client may have gone
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    def _in_thread(self, work: Callable[[], Any]) -> Awaitable[Any]:
        return asyncio.get_running_loop().run_in_executor(self._thread, work)
