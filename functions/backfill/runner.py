"""The backfill loop: list a page, keep its images, drop those already classified,
publish the rest (many URIs per message), checkpoint, next page.

A page's checkpoint is written only once every message of the page was accepted, so
after an interruption the run continues with the first page not wholly published.
That page may have been partly published: its images can be sent twice (at least once,
like Pub/Sub itself); the service's result_id and the `results` view absorb that.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from functions.backfill import listing, messages
from functions.backfill.checkpoint import Checkpoint, CheckpointFile, Counts
from functions.backfill.target import Target


@dataclass
class Plan:
    target: Target
    model_id: str
    per_message: int = 50
    page_size: int = 1000
    skip_prefixes: tuple[str, ...] = ()
    dry_run: bool = False
    restart: bool = False


@dataclass
class Report:
    counts: Counts = field(default_factory=Counts)        # this run
    total: Counts = field(default_factory=Counts)         # since the checkpoint's first run
    resumed_after: str = ""
    finished: bool = False
    failures: list[str] = field(default_factory=list)
    sample: list[list[str]] = field(default_factory=list)  # dry run: the first messages' URIs
    published: list[tuple[str, str]] = field(default_factory=list)  # (uri, generation) sent, for --wait
    pages: int = 0


class PublishFailed(Exception):
    pass


def starting_point(plan: Plan, checkpoints: CheckpointFile) -> Checkpoint:
    saved = None if plan.restart else checkpoints.load()
    if saved is None or saved.finished:  # a finished pass: list again (the results check skips the done)
        return checkpoints.fresh()
    return saved


def run(plan: Plan, *, storage, results, publisher, checkpoints: CheckpointFile, report: Report,
        on_page=lambda report: None, keep_published: bool = False, sample_messages: int = 3) -> Report:
    """Runs until the listing ends (report.finished) or a page fails to publish (PublishFailed).
    `report` is filled as the run goes, so a caller still has it when an interruption escapes."""
    checkpoint = starting_point(plan, checkpoints)
    report.resumed_after = checkpoint.after
    report.total = checkpoint.counts
    target = plan.target
    for page in listing.list_pages(storage, target.bucket, target.prefix, after=checkpoint.after,
                                   page_size=plan.page_size):
        counts = Counts(listed=len(page.objects))
        images = listing.images_of(storage, target.bucket, page.objects, plan.skip_prefixes)
        counts.images = len(images)
        pairs = [(target.uri(obj.name), obj.generation) for obj in images]
        done = results.done(plan.model_id, pairs) if pairs else set()
        todo = [pair for pair in pairs if pair not in done]
        counts.skipped = len(pairs) - len(todo)
        batch = messages.bodies([uri for uri, _ in todo], plan.per_message)
        counts.messages = len(batch)
        if plan.dry_run:
            counts.published = len(todo)
            report.sample += [uris for uris, _ in batch[:max(0, sample_messages - len(report.sample))]]
        elif batch:
            outcome = publisher.publish(batch)
            if outcome.failures:
                counts.failed = outcome.failed_uris
                counts.published = len(todo) - outcome.failed_uris
                counts.messages = outcome.published
                report.counts.add(counts)
                report.failures += outcome.failures
                on_page(report)
                raise PublishFailed(outcome.failures[0])
            counts.published = len(todo)
        if keep_published and not plan.dry_run:
            report.published += todo
        report.counts.add(counts)
        report.pages += 1
        if not plan.dry_run:
            checkpoint.after = page.last_name
            checkpoint.pages += 1
            checkpoint.counts.add(counts)
            checkpoints.save(checkpoint)
        on_page(report)
    report.finished = True
    if not plan.dry_run:
        checkpoint.finished = True
        checkpoints.save(checkpoint)
    return report

