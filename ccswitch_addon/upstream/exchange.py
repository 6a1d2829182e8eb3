"""One client request served by the provider side: its attempts, one provider after another.

Each attempt connects with a connect timeout, waits ``first_byte_seconds`` for response
headers, and is judged before the client sees any of it: an error status by the rules, a
complete answer by its body, a stream up to its commit point (the first event that carries
content, or COMMIT_BYTES held). A failure there goes on to the next provider within the same
request. After the commit point the stream goes to the client as it arrives; silence for
``stream_idle_seconds`` ends it with the API's own error event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from multidict import CIMultiDictProxy

from ccswitch_addon.core.breaker import Permit
from ccswitch_addon.core.config import AppConfig, ProviderConfig
from ccswitch_addon.core.facts import Facts
from ccswitch_addon.core.outcome import Effect, ErrorKind, Outcome, classify_error
from ccswitch_addon.core.proxy import Proxies
from ccswitch_addon.core.reasons import no_failover, order_of, skip_reason
from ccswitch_addon.core.record import Attempt, Finished
from ccswitch_addon.core.router import Router, Selection
from ccswitch_addon.core.rules import BODY_LIMIT, classify_response
from ccswitch_addon.core.windows import session_of
from ccswitch_addon.upstream.admission import Admission
from ccswitch_addon.upstream.client import (
    BadRequest,
    ProviderClient,
    ProviderError,
    ProviderResponse,
)
from ccswitch_addon.upstream.held import Answering
from ccswitch_addon.upstream.idle import Deadline, Silence
from ccswitch_addon.upstream.job import AttemptRecord, Committed, Exchange, Failed
from ccswitch_addon.upstream.keys import another_key, with_key
from ccswitch_addon.upstream.outgoing import Outgoing, shown_headers
from ccswitch_addon.upstream.translation import Leg, stripped_for_retry
from ccswitch_addon.upstream.verdicts import (
    UNANSWERED,
    broken_outcome,
    describe,
    forwarded,
    invalid_answer,
    json_reply,
    labelled,
    noted,
    ok_outcome,
    queue_of,
    transport_outcome,
)
from ccswitch_addon.wire.events import stream_error_event
from ccswitch_addon.wire.replies import api_error, unavailable
from ccswitch_addon.wire.translate import ConversationMemory
from ccswitch_addon.wire.usage import BodyWatch

__all__ = ["COMMIT_BYTES", "Upstream"]

logger = logging.getLogger(__name__)

COMMIT_BYTES = 64 * 1024  # a stream held this long without content is committed anyway
ERROR_BODY_LIMIT = 1024 * 1024  # an error body is kept whole up to this, for the client
# A complete (not streamed) answer is held whole to be judged, decoded, up to this: a model's
# answer is far smaller, and a compression bomb stops here as a failure of its attempt.
HELD_BODY_LIMIT = 4 * 1024 * 1024


class Upstream:
    """Runs the attempts of routed requests with one pooled client."""

    def __init__(
        self,
        router: Router,
        client: ProviderClient,
        done: Callable[[Finished], object],
        cooldown: Callable[[str, str], None],
        admit: Callable[[str, str, Permit | None], Awaitable[Permit | None]] | None = None,
        memory: ConversationMemory | None = None,
        recall: Callable[[AppConfig, Facts], Awaitable[None]] | None = None,
        proxies: Proxies | None = None,
    ) -> None:
        self.router = router
        self.client = client
        self.proxies = proxies or Proxies()  # replaced whole when the option changes
        self.admission = Admission(router)
        self._done = done
        self._cooldown = cooldown
        self._admit = admit  # the team gateway's leave, for a probe or an unproven provider
        self._recall = recall  # the team gateway's memory of conversations
        # previous_response_id history for Responses requests translated to Chat providers
        self.memory = memory if memory is not None else ConversationMemory()
        # every provider answer's headers (app, provider, headers): subscription windows
        self.on_headers: Callable[[str, str, CIMultiDictProxy[str]], None] | None = None

    # --- the request ------------------------------------------------------------------------

    async def serve(self, ex: Exchange, answer: Answering) -> None:
        """Try the providers in order; answer the client with the first that serves, the last
        failure when none does, or the API's own 'unavailable' when none can be tried."""
        app = ex.app
        optional = ex.endpoint.path if ex.endpoint.optional else None
        facts = Facts(app.api, ex.path, ex.headers, ex.body)
        if self._recall is not None:
            await self._recall(app, facts)
        if self.router.gate is not None:
            ex.session = session_of(ex.headers)
        selection = self.router.select_providers(app.name, optional, facts, ex.session)
        ex.route, ex.why, ex.conversation = selection.route, selection.why, selection.conversation
        ex.session = ex.session or ex.conversation
        ex.order = (
            order_of(app, self.router.current_of(app))
            if selection.route is None
            else queue_of(selection)
        )
        ex.skipped = self._skipped(selection, ex.session)
        failure: Failed | None = None
        refused: tuple[int, bytes] | None = None
        for provider in selection.providers:
            if app.max_attempts is not None and len(ex.attempts) >= app.max_attempts:
                break
            keyed = with_key(self.router, ex, provider)
            if keyed is None:
                ex.skipped.append(f"{provider.id}: every key cooling down")
                continue
            provider = keyed
            leg = self._leg(ex, provider)
            if leg.reply is not None:  # answered here (count_tokens), or not translatable
                if leg.local:
                    # An attempt of its own, so the log and console say who answered and how.
                    ex.attempts.append(Attempt(provider.id, 0.0, False, leg.reply[0]))
                    self._finish(ex, provider.id)
                    json_reply(answer, leg.reply, provider.id, len(ex.attempts), ex.route)
                    return
                refused = refused or leg.reply
                continue
            permit = await self.admission.acquire(app.name, provider.id)
            if self._admit is not None and permit is not None:
                held = permit
                try:
                    permit = await self._admit(app.name, provider.id, permit)
                except asyncio.CancelledError:  # the client left while the fleet was asked
                    gone = classify_error(ErrorKind.CLIENT_GONE)
                    self.router.record_result(app.name, provider.id, gone, held)
                    raise
            if permit is None:
                breaker = self.router.breaker(app.name, provider.id)
                ex.skipped.append(f"{provider.id}: {skip_reason(provider, breaker)}")
                continue
            result = await self._attempt(ex, provider, permit, leg)
            if isinstance(result, Committed):
                await self._deliver(ex, answer, result)
                return
            failure = result
            if not result.outcome.retry or not app.failover:
                break
        if failure is None and refused is not None:
            self._finish(ex, None)
            json_reply(answer, refused, None, len(ex.attempts), ex.route)
            return
        if failure is None or failure.outcome.retry:
            ex.note = no_failover(app, [a.provider for a in ex.attempts], ex.skipped)
        if failure is None:
            reply = unavailable(
                app.api,
                app.name,
                selection.reason or "all_unavailable",
                selection.retry_at,
                note=ex.note,
            )
            self._finish(ex, None)
            routed = [("x-ccswitch-route", ex.route)] if ex.route else []
            answer.whole(reply.status, noted([*reply.headers, *routed], ex.note), reply.body)
            return
        # A 4xx the request itself caused, or a rule's `return`: the client gets it as it is.
        served = failure.provider.id if not failure.outcome.retry and not failure.unsent else None
        self._finish(ex, served)
        if failure.status is None or failure.status < 400:
            # No provider answered, or none usably (a redirect, a broken 2xx, a gateway's JSON
            # error inside a 200): never passed on, said in the API's shape.
            tried = "; ".join(a.short() for a in ex.attempts)
            what = "answered" if failure.status is None else "gave a usable answer"
            message = f"ccswitch: no provider {what} ({tried})"
            reply = api_error(
                app.api,
                502,
                message + (f"; {ex.note}" if ex.note else ""),
                UNANSWERED[app.api],
            )
            failure.status, failure.headers, failure.body = 502, list(reply.headers), reply.body
        headers = labelled(failure.headers, failure.provider.id, len(ex.attempts), ex.route)
        answer.whole(failure.status or 502, noted(headers, ex.note), failure.body)

    def _skipped(self, selection: Selection, session: str | None = None) -> list[str]:
        """Queue members left out of the selection, as reasons for the comment and event."""
        chosen = {p.id for p in selection.providers}
        notes = []
        gate = self.router.gate
        for pid in queue_of(selection):
            if pid not in chosen:
                provider = selection.app.providers[pid]
                held = (
                    gate(selection.app.name, pid, session)
                    if gate is not None and not provider.disabled
                    else None
                )
                if held is not None:  # a spent budget, a full subscription window
                    notes.append(f"{pid}: {held[0]}")
                    continue
                breaker = (
                    None if provider.disabled else self.router.breaker(selection.app.name, pid)
                )
                notes.append(f"{pid}: {skip_reason(provider, breaker)}")
        return notes

    # --- one attempt -----------------------------------------------------------------------

    def _leg(self, ex: Exchange, provider: ProviderConfig) -> Leg:
        return Leg.of(ex.app, provider, ex.method, ex.path, ex.headers, ex.body, self.memory)

    async def _attempt(
        self, ex: Exchange, provider: ProviderConfig, permit: Permit | None, leg: Leg
    ) -> Committed | Failed:
        out = leg.out
        assert out is not None
        ex.models = (out.model_requested, out.model_sent)
        record = self._new_record(ex, provider, out)
        t0 = time.monotonic()
        deadline = Deadline()  # one timer for every wait of the attempt
        try:
            return await self._answer_of(ex, provider, permit, leg, record, t0, deadline)
        finally:
            deadline.close()

    async def _answer_of(
        self,
        ex: Exchange,
        provider: ProviderConfig,
        permit: Permit | None,
        leg: Leg,
        record: AttemptRecord | None,
        t0: float,
        deadline: Deadline,
    ) -> Committed | Failed:
        app, timing = ex.app, ex.app.breaker
        out = leg.out
        assert out is not None
        try:
            proxy = self.proxies.route(provider.proxy, provider.scheme, provider.host)
            response = await deadline.wait(
                self.client.request(
                    out.method, out.url, out.headers, out.body, timing.connect_seconds, proxy
                ),
                timing.first_byte_seconds or None,
            )
        except asyncio.CancelledError:
            self._gone(ex, provider, permit, record, t0)
            raise
        except BadRequest as e:  # nothing was sent: the tool's request cannot be written
            return self._unsendable(ex, provider, permit, record, t0, str(e))
        except Exception as e:
            outcome = transport_outcome(e, timing.first_byte_seconds)
            return self._failed(ex, provider, permit, record, t0, outcome, None, [], b"")
        first_byte_ms = (time.monotonic() - t0) * 1000
        slow = bool(timing.slow_ms and first_byte_ms > timing.slow_ms)
        ex.ttfb_ms = round((time.time() - ex.started) * 1000, 1)  # of the last attempt
        status = response.status
        headers = forwarded(response.headers)
        if self.on_headers is not None:
            self.on_headers(app.name, provider.id, response.headers)
        if record is not None:
            record.status, record.response_headers = status, list(headers)
        try:
            if 300 <= status < 400:  # never followed, never passed on: the tool would follow it
                response.close()
                where = response.headers.get("location", "")[:100]
                outcome = classify_error(ErrorKind.BROKEN, f"redirect {status} to {where!r}")
                return self._failed(
                    ex, provider, permit, record, t0, outcome, status, headers, b"", slow
                )
            if status >= 400:
                body, _ = await self._read(
                    response, t0 + timing.request_seconds, deadline, ERROR_BODY_LIMIT
                )
                retry = self._without_thinking(ex, provider, record, status, body)
                if retry is not None:
                    response.release()
                    return await self._attempt(ex, provider, permit, retry)
                outcome = classify_response(
                    status,
                    response.headers,
                    lambda: body[:BODY_LIMIT].decode("utf-8", "replace"),
                    time.time(),
                    app.rules_for(provider),
                    timing.max_cooldown_seconds,
                )
                response.release()
                again = another_key(self.router, ex, provider, status, outcome)
                if again is not None:  # not an attempt: the same provider with another key
                    if record is not None:
                        record.response_body, record.ended = body, time.time()
                        record.error = again[1]
                    return await self._attempt(ex, again[0], permit, self._leg(ex, again[0]))
                failed = self._failed(
                    ex, provider, permit, record, t0, outcome, status, headers, body, slow
                )
                failed.body = leg.error_body(status, body)
                failed.headers = leg.headers(failed.headers, streamed=False)
                return failed
            self.router.confirm(app.name, provider.id, permit)
            self.admission.wake(app.name, provider.id)
            content_type = response.headers.get("content-type", "")
            streamed = leg.streams(content_type)
            watch = BodyWatch(app.api, leg.content_type(content_type, streamed))
            if watch.sse:
                return await self._until_commit(
                    ex, provider, permit, record, t0, slow, response, headers, watch, leg, deadline
                )
            body, complete = await self._read(response, t0 + timing.request_seconds, deadline)
            if not complete:
                response.close()
                limit = f"answer over {HELD_BODY_LIMIT // (1024 * 1024)} MB decoded"
                outcome = classify_error(ErrorKind.BROKEN, limit)
                return self._failed(
                    ex, provider, permit, record, t0, outcome, status, headers, b"", slow
                )
            response.release()
            body, untranslatable = leg.answer(status, content_type, body, complete)
            watch.complete(body)
            problem = untranslatable or invalid_answer(body, watch, ex.endpoint.health)
            if not problem and not ex.whole and leg.asked_for_events():
                # The tool reads an event stream and nothing else: a JSON answer ends it empty.
                problem = f"a stream was asked for, the answer is {content_type or 'untyped'}"
            if problem:
                outcome = classify_error(ErrorKind.BROKEN, problem)
                return self._failed(
                    ex, provider, permit, record, t0, outcome, status, headers, body, slow
                )
            return Committed(
                provider, permit, response, record, t0, slow, body, watch, True, headers, leg
            )
        except asyncio.CancelledError:
            response.close()
            self._gone(ex, provider, permit, record, t0)
            raise
        except Exception as e:
            response.close()
            outcome = broken_outcome(e, timing.request_seconds)
            return self._failed(ex, provider, permit, record, t0, outcome, status, headers, b"")

    def _without_thinking(
        self,
        ex: Exchange,
        provider: ProviderConfig,
        record: AttemptRecord | None,
        status: int,
        answer: bytes,
    ) -> Leg | None:
        """After a 400 over a thinking signature (history from another provider): the request
        again without thinking, once per request, on the same provider with the same permit,
        counted neither as a failure nor as an attempt."""
        if ex.thinking_stripped:
            return None
        stripped = stripped_for_retry(ex.app.api, status, answer, ex.headers, ex.body)
        if stripped is None:
            return None
        ex.headers, ex.body = stripped
        ex.thinking_stripped = True
        leg = self._leg(ex, provider)
        if leg.out is None:
            return None
        if record is not None:
            record.response_body, record.ended = answer, time.time()
            record.error = "thinking signature refused: sent again without thinking"
        logger.info(
            "ccswitch: %s:%s refused a thinking signature: retried without thinking",
            ex.app.name,
            provider.id,
        )
        return leg

    async def _read(
        self,
        response: ProviderResponse,
        by: float,
        deadline: Deadline,
        limit: int = HELD_BODY_LIMIT,
    ) -> tuple[bytes, bool]:
        """The body up to ``limit`` bytes, ``by`` then (monotonic); True when it is whole."""
        whole = response.arrived(limit)
        if whole is not None:  # all there already (a small answer): no wait at all
            return whole, True
        body = bytearray()
        while len(body) < limit:
            chunk = await deadline.wait(response.readany(), by - time.monotonic())
            if not chunk:
                return bytes(body), True
            body += chunk
        return bytes(body), False

    async def _until_commit(
        self,
        ex: Exchange,
        provider: ProviderConfig,
        permit: Permit | None,
        record: AttemptRecord | None,
        t0: float,
        slow: bool,
        response: ProviderResponse,
        headers: list[tuple[str, str]],
        watch: BodyWatch,
        leg: Leg,
        deadline: Deadline,
    ) -> Committed | Failed:
        """Hold a stream until it carries content: a failure before that point is retried.

        Silence counts from the attempt's start: a relay that sends its headers at once and
        then nothing gets first_byte_seconds to its first token, not stream_idle_seconds.
        """
        timing = ex.app.breaker
        idle = timing.stream_idle_seconds or None
        first = t0 + timing.first_byte_seconds if timing.first_byte_seconds else None
        held = bytearray()
        status = response.status
        source = leg.body(response)
        while True:
            wait = idle
            if first is not None:
                left = max(0.0, first - time.monotonic())
                wait = left if wait is None else min(wait, left)
            try:
                chunk = await deadline.wait(source.readany(), wait)
            except TimeoutError:
                late = first is not None and time.monotonic() >= first
                why = (
                    f"no first token in {timing.first_byte_seconds:g}s"
                    if late
                    else f"silent for {idle:g}s before its first token"
                )
                break
            except ProviderError as e:
                why = describe(e) or "stream broke"
                break
            watch(chunk)
            held += chunk
            if not chunk:  # the end, before any content
                why = watch.problem() or "stream ended with no content"
                break
            if watch.error:
                why = watch.error
                break
            if len(held) >= COMMIT_BYTES and not watch.fields:
                why = f"no event in the first {COMMIT_BYTES // 1024} KiB: not an event stream"
                break
            if watch.content or len(held) >= COMMIT_BYTES:
                return Committed(
                    provider,
                    permit,
                    response,
                    record,
                    t0,
                    slow,
                    bytes(held),
                    watch,
                    False,
                    headers,
                    leg,
                    source,
                )
        response.release()  # kept only when the stream ended cleanly, else closed
        outcome = classify_error(ErrorKind.BROKEN, why)
        return self._failed(
            ex, provider, permit, record, t0, outcome, status, headers, bytes(held), slow
        )

    # --- the answer the client gets -----------------------------------------------------------

    async def _deliver(self, ex: Exchange, answer: Answering, chosen: Committed) -> None:
        provider, response = chosen.provider, chosen.response
        ex.watch = chosen.watch
        forwarded = chosen.headers
        if chosen.leg is not None:
            forwarded = chosen.leg.headers(forwarded, streamed=not chosen.complete)
        headers = labelled(forwarded, provider.id, len(ex.attempts) + 1, ex.route)
        if chosen.complete:
            self._succeeded(ex, chosen, ok_outcome(), chosen.buffered)
            self._finish(ex, provider.id)
            answer.whole(response.status, headers, chosen.buffered)
            return
        idle = ex.app.breaker.stream_idle_seconds or None
        watch = chosen.watch
        source = chosen.body or response
        outcome: Outcome | None = None
        told = False  # the client was sent an error event already
        untranslated = chosen.leg is None or chosen.leg.translator is None
        silence = Silence(idle)  # one timer for the stream, not a timeout per chunk
        try:
            await answer.start(response.status, headers)
            await answer.write(chosen.buffered)
            while True:
                try:
                    chunk = await silence.read(source.readany())
                except TimeoutError:
                    message = f"ccswitch: {provider.id} went silent for {idle:g}s mid-stream"
                    await answer.write(stream_error_event(ex.app.api, ex.path, message))
                    told = True
                    outcome = classify_error(ErrorKind.STREAM, f"silent for {idle:g}s")
                    break
                except ProviderError as e:
                    outcome = classify_error(ErrorKind.STREAM, describe(e) or "stream broke")
                    break
                watch(chunk)
                if not chunk:
                    break
                await answer.write(chunk)
            if outcome is None:
                problem = watch.problem()
                outcome = classify_error(ErrorKind.STREAM, problem) if problem else ok_outcome()
            if not told and untranslated and not watch.ended and not watch.error:
                # Cut before its end marker: the tool must not take it for a whole answer (a
                # translated stream gets the same from its translator). The blank lines end
                # any event cut mid-way first.
                reason = outcome.reason.removeprefix("stream: ")
                message = f"ccswitch: {provider.id}'s stream ended before its end ({reason})"
                await answer.write(b"\n\n" + stream_error_event(ex.app.api, ex.path, message))
        except (asyncio.CancelledError, ConnectionError) as e:
            response.close()
            self._succeeded(ex, chosen, classify_error(ErrorKind.CLIENT_GONE), chosen.buffered)
            self._finish(ex, provider.id)
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        finally:
            silence.close()
            response.close()
        self._succeeded(ex, chosen, outcome, chosen.buffered)
        self._finish(ex, provider.id)
        with contextlib.suppress(ConnectionError):  # the client went away after the last byte
            await answer.end()

    # --- telling the breaker and the record ---------------------------------------------------

    def _new_record(
        self, ex: Exchange, provider: ProviderConfig, out: Outgoing
    ) -> AttemptRecord | None:
        if not ex.keep_records:
            return None
        record = AttemptRecord(
            number=len(ex.attempts) + 1,
            provider=provider.id,
            method=out.method,
            url=out.url,
            headers=shown_headers(out),
            body=out.body,
            started=time.time(),
        )
        ex.records.append(record)
        return record

    def _record(
        self,
        ex: Exchange,
        provider: ProviderConfig,
        permit: Permit | None,
        outcome: Outcome,
        status: int | None,
        ms: float,
        slow: bool = False,
    ) -> None:
        app, pid = ex.app.name, provider.id
        if not ex.endpoint.health:
            # count_tokens and the like tell nothing about the provider's health: the breaker
            # only gets its permit back; a 404 means the provider lacks the endpoint.
            if status == 404 and ex.endpoint.optional:
                self.router.mark_missing(app, pid, ex.endpoint.path)
            outcome = Outcome(Effect.NEUTRAL, outcome.retry, outcome.reason)
        self.router.record_result(app, pid, outcome, permit, slow)
        self.admission.wake(app, pid)
        error = (
            outcome.reason if status is None or outcome.reason not in ("ok", str(status)) else None
        )
        ex.attempts.append(
            Attempt(
                provider=pid,
                ms=round(ms, 1),
                failed=outcome.effect is Effect.FAILURE,
                status=status,
                error=error,
            )
        )
        if outcome.cooldown_until is not None:
            self._cooldown(app, pid)

    def _failed(
        self,
        ex: Exchange,
        provider: ProviderConfig,
        permit: Permit | None,
        record: AttemptRecord | None,
        t0: float,
        outcome: Outcome,
        status: int | None,
        headers: list[tuple[str, str]],
        body: bytes,
        slow: bool = False,
    ) -> Failed:
        self._record(ex, provider, permit, outcome, status, (time.monotonic() - t0) * 1000, slow)
        if record is not None:
            record.response_body = body
            record.error = ex.attempts[-1].error
            record.failed = outcome.effect is Effect.FAILURE
            record.ended = time.time()
        if outcome.effect is Effect.FAILURE:  # the request's own line (addon) names it too
            logger.debug("ccswitch: %s:%s failed: %s", ex.app.name, provider.id, outcome.reason)
        return Failed(provider, outcome, status, headers, body)

    def _unsendable(
        self,
        ex: Exchange,
        provider: ProviderConfig,
        permit: Permit | None,
        record: AttemptRecord | None,
        t0: float,
        why: str,
    ) -> Failed:
        """The tool's request cannot be written (a line break in a header value, say): a 400 in
        the API's shape, no provider contacted, the breaker given its permit back untouched."""
        outcome = Outcome(Effect.NEUTRAL, retry=False, reason=f"request not sendable: {why}")
        failed = self._failed(ex, provider, permit, record, t0, outcome, None, [], b"")
        reply = api_error(
            ex.app.api, 400, f"ccswitch: the request cannot be sent: {why}", "invalid_request_error"
        )
        failed.status, failed.headers, failed.body = 400, list(reply.headers), reply.body
        failed.unsent = True
        return failed

    def _gone(
        self,
        ex: Exchange,
        provider: ProviderConfig,
        permit: Permit | None,
        record: AttemptRecord | None,
        t0: float,
    ) -> None:
        """The client went away: not the provider's failure, and the permit goes back."""
        outcome = classify_error(ErrorKind.CLIENT_GONE)
        self._record(ex, provider, permit, outcome, None, (time.monotonic() - t0) * 1000)
        if record is not None:
            record.error, record.ended = outcome.reason, time.time()
        self._finish(ex, None)

    def _succeeded(self, ex: Exchange, chosen: Committed, outcome: Outcome, kept: bytes) -> None:
        status = chosen.response.status
        ms = (time.monotonic() - chosen.t0) * 1000
        self._record(ex, chosen.provider, chosen.permit, outcome, status, ms, chosen.slow)
        chosen.permit = None
        record = chosen.record
        if record is not None:
            record.response_body = kept
            record.error = ex.attempts[-1].error
            record.failed = outcome.effect is Effect.FAILURE
            record.ended = time.time()

    def _finish(self, ex: Exchange, served: str | None) -> None:
        if ex.finished is not None:
            return
        ex.served = served
        finished = Finished(
            app=ex.app.name,
            served=served,
            attempts=ex.attempts,
            skipped=ex.skipped,
            model_requested=ex.models[0],
            model_sent=ex.models[1],
            total_ms=round((time.time() - ex.started) * 1000, 1),
            ttfb_ms=ex.ttfb_ms,
            streaming=bool(ex.watch and ex.watch.sse),
            route=ex.route,
            why=ex.why,
            conversation=ex.conversation,
            order=ex.order,
            note=ex.note,
            session=ex.session,
        )
        if ex.watch is not None:
            finished.usage = ex.watch.usage
        ex.finished = finished
        if not ex.whole:
            self.report(ex)

    def report(self, ex: Exchange) -> None:
        """Tell the engine that the exchange has finished (stats, breaker switch events, the
        request log, cost), once."""
        if ex.finished is None or ex.reported:
            return
        ex.reported = True
        try:
            self._done(ex.finished)
        except Exception:  # the record of a request must never break its answer
            logger.exception("ccswitch: recording a finished request failed")
