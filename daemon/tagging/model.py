"""Model backends (an LLM; the fine-tuned local classifier, daemon/tagging/finetuned.py) and the
asynchronous tagger that runs them.

A model is slow and may be remote, so it never runs on the ingest path. The daemon records messages with
the rules tagger's tags, then hands the stored records to :class:`AsyncModelTagger`, which tags them from a
bounded asyncio queue and adds the result as a second tag version with ``Store.add_tags``. A full queue
drops work (counted), a failing model or store is logged and counted: nothing is raised into the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from daemon.aio import cancel_and_wait
from daemon.store.base import Store
from daemon.tagging.llm import AnswerError, build_prompt, parse_answer
from schemas import AgentMessage, Record, Tags

log = structlog.get_logger()


class ModelBackend(Protocol):
    """Tags one message given its recent context. Slow is fine; raising is not (return ``None``)."""

    #: Stored with every tag, e.g. ``llm-claude-1`` or ``clf-mini-3``.
    version: str

    def tag(self, message: AgentMessage, context: Sequence[AgentMessage] = ()) -> Tags | None:
        """Tags for ``message`` (context oldest first), or ``None`` when the model gave nothing usable."""


class Classifier(Protocol):
    """The hook for a fine-tuned local classifier: it reads the same prompt an LLM would and answers the
    label JSON it was trained on (``finetune.py`` writes that training data)."""

    def classify(self, prompt: str) -> str | Mapping[str, Any]:
        """The label for ``prompt``, as JSON text or an already-decoded object."""


class ClassifierBackend:
    """Adapts a :class:`Classifier` to :class:`ModelBackend`: same prompt, same answer parsing."""

    def __init__(self, classifier: Classifier, name: str, revision: int = 1) -> None:
        """``name`` and ``revision`` make the tag version ``clf-<name>-<revision>``."""
        self.classifier = classifier
        self.version = f"clf-{name}-{revision}"

    def tag(self, message: AgentMessage, context: Sequence[AgentMessage] = ()) -> Tags | None:
        """Classify ``message``; ``None`` (logged) when the classifier fails or answers nonsense."""
        try:
            answer = self.classifier.classify(build_prompt(message, context))
            text = answer if isinstance(answer, str) else _dumps(answer)
            return parse_answer(text, self.version)
        except (AnswerError, ValueError, TypeError, RuntimeError) as exc:
            log.warning("classifier_tag_failed", message_id=message.message_id, reason=str(exc))
            return None


def _dumps(value: Mapping[str, Any]) -> str:
    import json

    return json.dumps(dict(value))


#: name -> factory(**options) for model backends; ``register_backend`` adds to it.
_BACKENDS: dict[str, Callable[..., ModelBackend]] = {}


def register_backend(name: str, factory: Callable[..., ModelBackend]) -> None:
    """Make a model backend available to :func:`make_backend` under ``name``."""
    if name in _BACKENDS:
        raise ValueError(f"model backend {name!r} is already registered")
    _BACKENDS[name] = factory


def make_backend(name: str, **options: Any) -> ModelBackend:
    """Build the registered backend ``name`` with ``options`` (e.g. ``complete=..., model=...``)."""
    try:
        factory = _BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(_BACKENDS)) or "none"
        raise ValueError(f"unknown model backend {name!r} (registered: {known})") from None
    return factory(**options)


def _llm_factory(**options: Any) -> ModelBackend:
    from daemon.tagging.llm import LLMTagger

    return LLMTagger(**options)


def _classifier_factory(**options: Any) -> ModelBackend:
    return ClassifierBackend(**options)


def _finetuned_factory(**options: Any) -> ModelBackend:
    from daemon.tagging.finetuned import FineTunedTagger

    return FineTunedTagger(**options)


register_backend("llm", _llm_factory)
register_backend("classifier", _classifier_factory)
register_backend("finetuned", _finetuned_factory)


@dataclass(slots=True)
class ModelTaggerCounters:
    """What the asynchronous tagger did, for health and the shutdown line."""

    submitted: int = 0
    tagged: int = 0
    no_tags: int = 0  #: the model answered nothing usable
    failed: int = 0  #: the model or the store raised
    dropped: int = 0  #: the queue was full


class AsyncModelTagger:
    """Adds model tags to stored records in the background, from a bounded queue.

    Call :meth:`submit` with each record after it is committed (it never blocks and never raises), run
    :meth:`run` as a task, and :meth:`stop` it at shutdown. :meth:`drain` processes what is queued and
    returns, which makes tests deterministic without sleeps.
    """

    def __init__(
        self,
        backend: ModelBackend,
        store: Store,
        queue_size: int = 1000,
        context: int = 6,
        max_conversations: int = 1000,
    ) -> None:
        """``queue_size``: records waiting at most (more are dropped and counted); ``context``: earlier
        messages of the conversation given to the model; ``max_conversations``: LRU bound on the contexts
        held in memory."""
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.backend = backend
        self.store = store
        self.counters = ModelTaggerCounters()
        self._queue: asyncio.Queue[tuple[AgentMessage, tuple[AgentMessage, ...]]] = asyncio.Queue(queue_size)
        self._context_len = context
        self._max_conversations = max_conversations
        self._contexts: OrderedDict[str, deque[AgentMessage]] = OrderedDict()

    @property
    def version(self) -> str:
        """The tag version this tagger adds."""
        return self.backend.version

    def submit(self, record: Record) -> bool:
        """Queue ``record`` for model tagging; ``False`` if the queue is full (dropped, counted)."""
        try:
            message = record.envelope
            ctx = self._contexts.get(message.conversation_id)
            if ctx is None:
                ctx = deque(maxlen=self._context_len)
                self._contexts[message.conversation_id] = ctx
                if len(self._contexts) > self._max_conversations:
                    self._contexts.popitem(last=False)
            else:
                self._contexts.move_to_end(message.conversation_id)
            snapshot = tuple(ctx)
            ctx.append(message)
            self._queue.put_nowait((message, snapshot))
        except asyncio.QueueFull:
            self.counters.dropped += 1
            return False
        except Exception as exc:  # submit is called on the ingest path: it must not raise
            self.counters.failed += 1
            log.warning("model_tag_submit_failed", error=f"{type(exc).__name__}: {exc}")
            return False
        self.counters.submitted += 1
        return True

    async def _process(self, message: AgentMessage, context: tuple[AgentMessage, ...]) -> None:
        try:
            # The backend and the store are blocking; keep them off the event loop.
            tags = await asyncio.to_thread(self.backend.tag, message, context)
            if tags is None:
                self.counters.no_tags += 1
                return
            await asyncio.to_thread(self.store.add_tags, message.message_id, tags)
            self.counters.tagged += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one bad message or a store hiccup must not stop the tagger
            self.counters.failed += 1
            log.warning(
                "model_tag_failed",
                message_id=message.message_id,
                version=self.version,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def drain(self) -> None:
        """Process everything queued now, then return."""
        while not self._queue.empty():
            message, context = self._queue.get_nowait()
            try:
                await self._process(message, context)
            finally:
                self._queue.task_done()

    async def run(self) -> None:
        """Process records as they come, until cancelled (use :meth:`stop`)."""
        while True:
            message, context = await self._queue.get()
            try:
                await self._process(message, context)
            finally:
                self._queue.task_done()

    async def stop(self, task: asyncio.Task[None], timeout_s: float = 10.0) -> None:
        """Let ``task`` (running :meth:`run`) finish the queue for up to ``timeout_s``, then cancel it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout_s)
        await cancel_and_wait((task,), timeout_s)
        log.info("model_tagger_stopped", version=self.version, **vars_of(self.counters))

    def pending(self) -> int:
        """Records waiting in the queue."""
        return self._queue.qsize()


def vars_of(counters: ModelTaggerCounters) -> dict[str, int]:
    """The counters as a plain dict (for log lines and health)."""
    return {
        "submitted": counters.submitted,
        "tagged": counters.tagged,
        "no_tags": counters.no_tags,
        "failed": counters.failed,
        "dropped": counters.dropped,
    }
