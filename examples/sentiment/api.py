"""The HTTP side: requests enqueue work and return at once; clients fetch the result.

    POST /score-batch   {"texts": ["Great service!", "Arrived broken."]}  ->  {"task_id": "..."}
    GET  /result/{id}   ->  {"task_id": "...", "state": "SUCCESS", "ready": true, "result": [...]}
    POST /retrain       ->  {"task_id": "..."}

``GET /result/{id}?wait=5`` holds the request until the result lands (at most that many
seconds): the backend pushes it, nothing polls.

Every endpoint is ``async def`` and uses conveyor's async client (``adelay``, ``aget``,
``astate``): nothing blocks the event loop, so one uvicorn process serves many waiting
requests at once without a thread each.

Run with ``uvicorn examples.sentiment.api:app`` from the repository root.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import FastAPI, Query
from pydantic import BaseModel, Field

from conveyor import states
from conveyor.exceptions import TimeoutError

from . import tasks

app = FastAPI(title="sentiment", summary="Review scoring on conveyor workers")


class ScoreBatch(BaseModel):
    texts: list[str] = Field(min_length=1, max_length=1000)


class Ticket(BaseModel):
    task_id: str


@app.post("/score-batch", status_code=202)
async def score_batch(body: ScoreBatch) -> Ticket:
    return Ticket(task_id=(await tasks.batch_score.adelay(body.texts)).id)


@app.post("/retrain", status_code=202)
async def retrain() -> Ticket:
    return Ticket(task_id=(await tasks.retrain.adelay()).id)


@app.get("/result/{task_id}")
async def result(
    task_id: str, wait: Annotated[float, Query(ge=0, le=30)] = 0
) -> dict[str, Any]:
    handle = tasks.app.AsyncResult(task_id)
    if wait:
        with contextlib.suppress(TimeoutError):  # not ready in time: say how it stands
            await handle.aget(timeout=wait, propagate=False)
    state = await handle.astate()
    answer: dict[str, Any] = {"task_id": task_id, "state": state}
    if state == states.SUCCESS:
        return answer | {"ready": True, "result": await handle.ainfo()}
    if state in states.READY_STATES:
        return answer | {"ready": True, "result": None, "error": repr(await handle.ainfo())}
    return answer | {"ready": False, "result": None}
