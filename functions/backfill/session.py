"""One backfill run as the user sees it: what it will do, the progress bar, the summary,
the dry run's sample and cost, and --wait; errors become one clear line and an exit code."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rich.markup import escape

from functions.backfill import cost, listing, progress, runner
from functions.backfill.checkpoint import CheckpointFile
from functions.backfill.done import Nothing
from functions.console.errors import CommandError
from functions.console.ui import console, errors

EXIT_INTERRUPTED = 130


def per_message(requested: int) -> tuple[int, str | None]:
    from shared.config import Settings
    limit = Settings.from_env().max_instances
    if requested > limit:
        return limit, f"--per-message {requested} is more than MAX_INSTANCES ({limit}), the most images the " \
                      f"service takes in one message: sending {limit} per message"
    return requested, None


class Session:
    def __init__(self, args, target, *, storage, results, landed, publisher, destination: str,
                 destination_text: str, model_id: str, checkpoint_dir: Path, wait_interval_s: float,
                 wait_timeout_s: float):
        from shared.config import Settings
        self.args, self.target = args, target
        self.storage, self.results, self.landed, self.publisher = storage, results, landed, publisher
        self.destination_text = destination_text
        count, note = per_message(args.per_message)
        self.note = note
        self.plan = runner.Plan(target=target, model_id=model_id, per_message=count, page_size=args.page_size,
                                skip_prefixes=Settings.from_env().skip_prefixes, dry_run=args.dry_run,
                                restart=args.restart)
        self.checkpoints = CheckpointFile(checkpoint_dir, target.bucket, target.prefix, model_id, destination)
        self.wait_interval_s, self.wait_timeout_s = wait_interval_s, wait_timeout_s
        self.report = runner.Report()

    def run(self) -> int:
        self._header()
        code = self._publish()
        if code == 0 and self.args.wait and not self.plan.dry_run:
            code = self._wait()
        return code

    def _header(self) -> None:
        plan = self.plan
        if self.note:
            errors.print("[yellow]note:[/] " + escape(self.note), soft_wrap=True)
        verb = "would publish to" if plan.dry_run else "publishing to"
        console.print(f"backfill {self.target} → {verb} {self.destination_text}", markup=False, soft_wrap=True)
        check = "no results check: every image is sent" if isinstance(self.results, Nothing) else \
            f"images with a result of this model in {self.results.description} are skipped"
        console.print(f"model {plan.model_id}: {check}; {plan.per_message} URIs per message", markup=False,
                      soft_wrap=True)
        saved = None if plan.restart else self.checkpoints.load()
        if saved is not None and not saved.finished:
            console.print(f"resuming after {saved.after} ({saved.pages:,} pages, {saved.counts.published:,} images "
                          f"published before; checkpoint {self.checkpoints.path})", markup=False, soft_wrap=True)
        elif saved is not None and saved.finished:
            done_at = datetime.fromtimestamp(saved.updated_at).isoformat(sep=" ", timespec="seconds")
            console.print(f"the last run finished at {done_at}: listing again (images with results are skipped)",
                          markup=False, soft_wrap=True)

    def _publish(self) -> int:
        from google.api_core import exceptions as gexc
        report, plan = self.report, self.plan
        counter = None
        try:
            with progress.bar() as bar:
                task = bar.add_task("listed", total=None, status="")
                after = runner.starting_point(plan, self.checkpoints).after

                def count(**kwargs):
                    return listing.count_objects(self.storage(), self.target.bucket, self.target.prefix,
                                                 after=after, skip_prefixes=plan.skip_prefixes, **kwargs)

                counter = progress.Counter(count, lambda total: bar.update(task, total=total)).start()

                def on_page(rep):
                    bar.update(task, completed=rep.counts.listed, status=progress.status_text(rep.counts, plan.dry_run))

                runner.run(plan, storage=self.storage(), results=self.results, publisher=self.publisher,
                           checkpoints=self.checkpoints, report=report, on_page=on_page,
                           keep_published=self.args.wait)
                bar.update(task, total=report.counts.listed, completed=report.counts.listed)
        except runner.PublishFailed:
            self._summary()
            shown = report.failures[:5]
            more = len(report.failures) - len(shown)
            raise CommandError("publishing failed, so the run stopped (the checkpoint is before the failed page: run "
                               "the same command again to continue):\n  " + "\n  ".join(shown)
                               + (f"\n  … and {more} more" if more else "")) from None
        except KeyboardInterrupt:
            self._summary()
            console.print(f"interrupted after {report.pages:,} pages: run the same command again to continue "
                          f"(checkpoint {self.checkpoints.path})", markup=False, soft_wrap=True)
            return EXIT_INTERRUPTED
        except gexc.NotFound as exc:
            raise CommandError(f"not found: {exc.message} (does gs://{self.target.bucket} exist?)") from None
        except (gexc.Forbidden, gexc.Unauthorized) as exc:
            raise CommandError(f"not allowed: {exc.message} (listing needs storage.objects.list on "
                               f"gs://{self.target.bucket}, publishing pubsub.topics.publish)") from None
        except gexc.GoogleAPICallError as exc:
            self._summary()
            raise CommandError(f"listing gs://{self.target.bucket} failed after {report.pages:,} pages: {exc.message}. "
                               "Run the same command again to continue from the checkpoint") from None
        finally:
            if counter is not None:
                counter.stop()
            if self.publisher is not None:
                self.publisher.close()
        self._summary()
        if plan.dry_run:
            self._dry_run_details()
        return 1 if report.counts.failed else 0

    def _summary(self) -> None:
        report = self.report
        title = "dry run: nothing was published" if self.plan.dry_run else "backfill summary"
        console.print(progress.summary(report.counts, dry_run=self.plan.dry_run, title=title))
        if report.resumed_after and not self.plan.dry_run:
            total = report.total
            console.print(f"since the first run of this backfill: {total.listed:,} listed, {total.published:,} "
                          f"published, {total.skipped:,} skipped", markup=False)

    def _dry_run_details(self) -> None:
        for uris in self.report.sample:
            console.print(f"  would send {{\"uris\": [{len(uris)} URIs: {uris[0]} … {uris[-1]}]}}", markup=False,
                          soft_wrap=True)
        console.print("cost: " + cost.describe(cost.estimate(self.report.counts.published)), markup=False,
                      soft_wrap=True)

    def _wait(self) -> int:
        sent = self.report.published
        if not sent:
            return 0
        console.print(f"waiting for the results of {len(sent):,} images (Ctrl-C stops waiting; the work goes on)",
                      markup=False)
        try:
            missing = self._waiting(sent)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        if missing:
            errors.print(f"[red]bucketeye:[/] {len(missing):,} images have no result after "
                         f"{self.wait_timeout_s:.0f} s, e.g. {escape(missing[0][0])}", soft_wrap=True)
            return 1
        console.print(f"all {len(sent):,} images have their result", markup=False)
        return 0

    def _waiting(self, sent):
        from functions.backfill.waiting import wait_for_results
        return wait_for_results(self.landed, self.plan.model_id, sent, timeout_s=self.wait_timeout_s,
                                interval_s=self.wait_interval_s)
