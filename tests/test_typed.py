"""Arguments and results come back as the types the task annotates."""

from __future__ import annotations

import dataclasses
import enum
import re
import sys
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, NamedTuple, TypedDict

import pydantic
import pytest
from redis.asyncio import Redis

import aqueue
from aqueue._redis._keys import Keys
from aqueue._typed import UNTYPED
from aqueue.testing import RedisServer
from tests.helpers import entries

WHEN = datetime(2026, 12, 4, 20, 15, 30, 123456, tzinfo=UTC)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class Order:
    id: uuid.UUID
    placed: datetime
    total: Decimal
    color: Color
    points: tuple[Point, ...]
    note: str | None = None


class Span(NamedTuple):
    start: date
    end: time


class Totals(TypedDict):
    amount: Decimal
    on: date


class Customer(pydantic.BaseModel):
    name: str
    since: datetime


async def test_arguments_arrive_as_their_annotated_types(app: aqueue.App) -> None:
    seen: list[Any] = []

    @app.task
    async def record(
        when: datetime,
        job: uuid.UUID,
        price: Decimal,
        color: Color,
        point: Point,
        span: Span,
        pair: tuple[int, str],
        data: bytes,
        totals: Totals,
    ) -> None:
        seen.extend([when, job, price, color, point, span, pair, data, totals])

    sent: list[Any] = [
        WHEN,
        uuid.UUID(int=7),
        Decimal("10.25"),
        Color.BLUE,
        Point(1, 2),
        Span(date(2026, 1, 2), time(3, 4)),
        (1, "a"),
        b"\x00\xffimage",
        Totals(amount=Decimal("0.1"), on=date(2026, 5, 6)),
    ]
    async with aqueue.Worker(app):
        job = await record.enqueue(*sent)
        await job.result(timeout=5)
    assert seen == sent
    assert [type(value) for value in seen] == [type(value) for value in sent]


async def test_nested_and_optional_types_arrive_as_their_annotated_types(
    app: aqueue.App,
) -> None:
    seen: list[Any] = []

    @app.task
    async def place(order: Order, later: list[Order] | None = None) -> None:
        seen.extend([order, later])

    order = Order(uuid.uuid4(), WHEN, Decimal("9.99"), Color.RED, (Point(0, 1),))
    async with aqueue.Worker(app):
        await (await place.enqueue(order, later=[order])).result(timeout=5)
        await (await place.enqueue(order)).result(timeout=5)
    assert seen == [order, [order], order, None]


async def test_a_pydantic_model_arrives_and_returns_as_the_model(app: aqueue.App) -> None:
    @app.task
    async def renew(customer: Customer) -> Customer:
        return customer.model_copy(update={"name": customer.name.upper()})

    async with aqueue.Worker(app):
        job = await renew.enqueue(Customer(name="ada", since=WHEN))
        assert await job.result(timeout=5) == Customer(name="ADA", since=WHEN)


@dataclasses.dataclass(frozen=True)
class Renewal:
    customer: Customer
    on: date


async def test_a_dataclass_holding_a_pydantic_model_arrives_and_returns_as_itself(
    app: aqueue.App,
) -> None:
    @app.task
    async def renew(renewal: Renewal) -> Renewal:
        assert isinstance(renewal.customer, Customer)
        return dataclasses.replace(renewal, on=renewal.on.replace(year=2027))

    async with aqueue.Worker(app):
        job = await renew.enqueue(Renewal(Customer(name="ada", since=WHEN), WHEN.date()))
        renewed = await job.result(timeout=5)
    assert renewed == Renewal(Customer(name="ada", since=WHEN), date(2027, 12, 4))


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    children: tuple[Node, ...] = ()


async def test_a_dataclass_whose_fields_name_itself_arrives_as_itself(app: aqueue.App) -> None:
    @app.task
    async def count(tree: Node) -> int:
        assert isinstance(tree.children[0], Node)
        return len(tree.children)

    async with aqueue.Worker(app):
        job = await count.enqueue(Node("root", (Node("leaf"),)))
        assert await job.result(timeout=5) == 1


class Upload(pydantic.BaseModel):
    data: bytes


class Base64Upload(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")
    data: bytes


async def test_binary_bytes_in_a_pydantic_model_are_refused_saying_how_to_send_them(
    app: aqueue.App,
) -> None:
    @app.task
    async def store(upload: Upload) -> None: ...

    with pytest.raises(aqueue.SerializationError, match='ser_json_bytes="base64"'):
        await store.enqueue(Upload(data=b"\x89PNG"))


async def test_binary_bytes_arrive_in_a_pydantic_model_that_sends_them_as_base64(
    app: aqueue.App,
) -> None:
    @app.task
    async def size(upload: Base64Upload) -> int:
        return len(upload.data)

    async with aqueue.Worker(app):
        job = await size.enqueue(Base64Upload(data=b"\x89PNG"))
        assert await job.result(timeout=5) == 4


async def test_the_result_comes_back_as_the_annotated_return_type(app: aqueue.App) -> None:
    @app.task
    async def locate(x: int) -> tuple[Point, datetime]:
        return Point(x, x), WHEN

    async with aqueue.Worker(app):
        job = await locate.enqueue(3)
        assert await job.result(timeout=5) == (Point(3, 3), WHEN)
        assert (await job.info()).result == (Point(3, 3), WHEN)


async def test_a_job_found_by_id_decodes_its_result_by_the_registered_task(
    app: aqueue.App,
) -> None:
    @app.task
    async def stamp() -> datetime:
        return WHEN

    async with aqueue.Worker(app):
        job = await stamp.enqueue()
        await job.result(timeout=5)
    assert await app.job(job.id).result(timeout=5) == WHEN


async def test_a_job_of_a_task_this_app_does_not_know_returns_plain_json(
    app: aqueue.App, server: RedisServer
) -> None:
    @app.task(name="stamp")
    async def stamp() -> datetime:
        return WHEN

    async with aqueue.Worker(app):
        job = await stamp.enqueue()
        await job.result(timeout=5)
    async with aqueue.App(server.url, namespace=app.namespace) as producer:
        assert await producer.job(job.id).result(timeout=5) == "2026-12-04T20:15:30.123456Z"


async def test_an_argument_that_does_not_fit_its_annotation_is_refused_before_writing(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def place(order: Order, when: datetime) -> None: ...

    order = Order(uuid.uuid4(), WHEN, Decimal(1), Color.RED, ())
    with pytest.raises(aqueue.SerializationError, match="argument 'when' \\(int\\)"):
        await place.enqueue(order, 12)  # type: ignore[arg-type]
    assert await entries(redis, Keys(app.namespace, "default").stream) == []


async def test_a_value_of_a_type_with_no_json_form_is_refused_naming_the_argument(
    app: aqueue.App,
) -> None:
    @app.task
    async def keep(thing: Point, other: Point) -> None: ...

    with pytest.raises(aqueue.SerializationError, match="argument 'other' \\(object\\)"):
        await keep.enqueue(Point(1, 2), other=object())  # type: ignore[arg-type]


async def test_a_result_that_does_not_fit_the_return_annotation_fails_the_job(
    app: aqueue.App,
) -> None:
    @app.task
    async def stamp() -> datetime:
        return "not a time"  # type: ignore[return-value]

    async with aqueue.Worker(app):
        job = await stamp.enqueue()
        with pytest.raises(aqueue.TaskFailed, match="cannot be encoded"):
            await job.result(timeout=5)


def test_a_task_with_json_annotations_converts_nothing() -> None:
    app = aqueue.App()

    @app.task
    async def plain(
        a: int, b: str, c: list[dict[str, float]], d: Any, e: bool | None
    ) -> dict[str, Any]:
        return {}

    @app.task
    async def bare(a, b):  # type: ignore[no-untyped-def]
        return a

    assert plain.config.types == bare.config.types == UNTYPED


def test_only_the_result_is_converted_when_only_it_needs_converting() -> None:
    app = aqueue.App()

    @app.task
    async def stamp(n: int) -> datetime:
        return WHEN

    assert stamp.config.types.arguments is None


def test_a_typed_task_without_msgspec_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "msgspec", None)  # import msgspec raises ImportError
    app = aqueue.App()
    with pytest.raises(ImportError, match=re.escape("pip install 'aqueue-redis[typed]'")):

        @app.task
        async def stamp(when: datetime) -> None: ...


def test_an_annotation_not_defined_at_decoration_leaves_its_values_json() -> None:
    app = aqueue.App()

    @app.task
    async def later(thing: NotImportedHere, when: datetime) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    assert later.config.types.arguments is not None
    assert later.config.types.arguments.positional[0][1] == "when"


async def test_a_chain_step_gets_its_own_arguments_and_the_previous_result_typed(
    app: aqueue.App,
) -> None:
    @app.task
    async def locate(x: int) -> Point:
        return Point(x, x)

    @app.task
    async def move(point: Point, by: Point, at: datetime) -> tuple[Point, datetime]:
        return Point(point.x + by.x, point.y + by.y), at

    async with aqueue.Worker(app):
        job = await (locate.s(1) | move.s(Point(10, 20), WHEN)).enqueue()
        assert await job.result(timeout=5) == (Point(11, 21), WHEN)


async def test_a_groups_result_holds_each_members_result_as_its_tasks_return_type(
    app: aqueue.App,
) -> None:
    @app.task
    async def corner(x: int) -> Point:
        return Point(x, 0)

    @app.task
    async def stamp() -> datetime:
        return WHEN

    @app.task
    async def mirror(point: Point) -> Point:
        return Point(point.y, point.x)

    members: list[aqueue.Canvas[Any]] = [
        corner.s(1),
        stamp.s(),
        corner.s(2) | mirror.s(),
        aqueue.group([stamp.s()]),
    ]
    async with aqueue.Worker(app):
        job = await aqueue.group(members).enqueue()
        assert await job.result(timeout=5) == [Point(1, 0), WHEN, Point(0, 2), [WHEN]]
        assert (await job.info()).result == [Point(1, 0), WHEN, Point(0, 2), [WHEN]]


async def test_a_group_with_failed_members_holds_the_others_as_their_return_type(
    app: aqueue.App,
) -> None:
    @app.task
    async def locate(x: int) -> Point:
        if x < 0:
            raise ValueError("no negative points")
        return Point(x, x)

    async with aqueue.Worker(app):
        job = await aqueue.group([locate.s(1), locate.s(-1)], return_exceptions=True).enqueue()
        located, failed = await job.result(timeout=5)
    assert located == Point(1, 1)
    assert isinstance(failed, aqueue.TaskFailed)


FORWARD = """
from __future__ import annotations

import dataclasses
from datetime import date

import aqueue

app = aqueue.App(URL, namespace=NAMESPACE)


@app.task
async def postpone(report: Report) -> Report:
    assert isinstance(report.due, date), report
    return Report(report.due.replace(year=report.due.year + 1))


@dataclasses.dataclass
class Report:  # defined after the task that names it
    due: date
"""


async def test_a_class_defined_after_its_task_types_the_arguments_and_the_result(
    server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = type(sys)("forward_types")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    module.__dict__.update(URL=server.url, NAMESPACE=namespace)
    exec(compile(FORWARD, "forward_types.py", "exec"), module.__dict__)
    report = module.Report(date(2026, 12, 4))
    async with module.app, aqueue.Worker(module.app):
        job = await module.postpone.enqueue(report)
        assert await job.result(timeout=5) == module.Report(date(2027, 12, 4))
