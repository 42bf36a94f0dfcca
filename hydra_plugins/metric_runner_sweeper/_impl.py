"""The grid sweeper's work (imported when a sweep starts, so that Hydra's plugin discovery
in every Hydra app stays light)."""

import contextlib
import copy
import dataclasses
import functools
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from hydra._internal import config_loader_impl
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.config_repository import IConfigRepository
from hydra._internal.defaults_list import DefaultsList, Overrides
from hydra.core.config_loader import ConfigLoader
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.default_element import ResultDefault
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.config_source import ConfigResult, ConfigSource
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig, OmegaConf

from metric_runner.runner.registry import ConfigError
from metric_runner.runner.sweep import PRECHECKED_HASHES, SWEEP_LOG, check_sweep_jobs, read_job

# The launcher that runs the jobs in this process, one after the other (Hydra's default).
IN_PROCESS_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
# Checked configs kept for the launcher: about 0.3 MB each; later jobs are composed again.
MOST_KEPT_CONFIGS = 512


class ComposedOnce(ConfigLoader):
    """Hydra's config loader, except that the launcher gets the config the pre-check composed
    for a job instead of composing it a second time (each config once: the launcher fills in
    its job's id and number)."""

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self.composed: dict[tuple[str, ...], DictConfig] = {}

    def keep(self, overrides: Sequence[str], cfg: DictConfig) -> None:
        if len(self.composed) < MOST_KEPT_CONFIGS:
            self.composed[tuple(overrides)] = cfg

    def load_sweep_config(
        self, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig:
        kept = self.composed.pop(tuple(sweep_overrides), None)
        if kept is not None:
            return kept
        return self.loader.load_sweep_config(master_config, sweep_overrides)

    # Everything else is the wrapped loader's.
    def load_configuration(
        self,
        config_name: str | None,
        overrides: list[str],
        run_mode: RunMode,
        from_shell: bool = True,
        validate_sweep_overrides: bool = True,
    ) -> DictConfig:
        return self.loader.load_configuration(
            config_name, overrides, run_mode, from_shell, validate_sweep_overrides
        )

    def get_search_path(self) -> ConfigSearchPath:
        return self.loader.get_search_path()

    def get_sources(self) -> list[ConfigSource]:
        return self.loader.get_sources()

    def list_groups(self, parent_name: str) -> list[str]:
        return self.loader.list_groups(parent_name)

    def get_group_options(self, *args, **kwargs) -> list[str]:
        return self.loader.get_group_options(*args, **kwargs)

    def compute_defaults_list(self, *args, **kwargs) -> list[ResultDefault]:
        return self.loader.compute_defaults_list(*args, **kwargs)


class ParsedOnce(IConfigRepository):
    """Hydra's config repository, except that each config file is read and parsed once: the
    jobs of a sweep are composed from the same files, and parsing them is about a third of
    composing a job's config."""

    def __init__(
        self, repository: IConfigRepository, parsed: dict | None = None, shared: bool = False
    ) -> None:
        self.repository = repository
        self.parsed: dict[tuple, ConfigResult | None] = {} if parsed is None else parsed
        # True while `repository` is the one this copy was made from (see initialize_sources)
        self.shared = shared

    def __deepcopy__(self, memo: dict) -> "ParsedOnce":
        # Hydra copies the repository for each composition, in case the primary config changes
        # its search path (initialize_sources). Copying it costs a tenth of a composition and
        # is seldom needed: the copies share the repository until one changes its sources, and
        # they share what was parsed.
        return ParsedOnce(self.repository, self.parsed, shared=True)

    def load_config(self, config_path: str) -> ConfigResult | None:
        key = (config_path, tuple(source.path for source in self.repository.get_sources()))
        if key not in self.parsed:
            self.parsed[key] = self.repository.load_config(config_path)
        return copy.deepcopy(self.parsed[key])  # composing changes the configs it loads

    # Everything else is the wrapped repository's.
    def get_schema_source(self) -> ConfigSource:
        return self.repository.get_schema_source()

    def group_exists(self, config_path: str) -> bool:
        return self.repository.group_exists(config_path)

    def config_exists(self, config_path: str) -> bool:
        return self.repository.config_exists(config_path)

    def get_group_options(
        self, group_name: str, results_filter: ObjectType | None = ObjectType.CONFIG
    ) -> list[str]:
        return self.repository.get_group_options(group_name, results_filter)

    def get_sources(self) -> list[ConfigSource]:
        return self.repository.get_sources()

    def initialize_sources(self, config_search_path: ConfigSearchPath) -> None:
        if self.shared:
            self.repository, self.shared = copy.deepcopy(self.repository), False
        self.repository.initialize_sources(config_search_path)


@contextlib.contextmanager
def parsing_each_file_once(loader: ConfigLoader) -> Iterator[None]:
    """While the sweep's jobs are composed (Hydra's own loader keeps its repository in
    `repository`; any other loader composes as it does)."""
    hydra_loader = loader.loader if isinstance(loader, ComposedOnce) else loader
    repository = getattr(hydra_loader, "repository", None)
    if not isinstance(repository, IConfigRepository):
        yield
        return
    hydra_loader.repository = ParsedOnce(repository)
    try:
        yield
    finally:
        hydra_loader.repository = repository


class SharedByChoices:
    """The parts of a job's composition that depend only on its config-group choices, made
    once for all the jobs of a sweep that choose the same groups (a sweep over seeds: once).

    Hydra composes a config in three steps: the defaults list (which files, from the group
    choices and the search path), the merge of those files, then the value overrides. The
    first two do not read the value overrides (they reach Hydra's composition as the defaults
    list's `config_overrides`, applied after the merge), so jobs with the same group choices
    and search path share them: each job gets the shared defaults list with its own value
    overrides, and a copy of the shared merge (a copy costs a seventh of a merge)."""

    def __init__(self) -> None:
        self.defaults_lists: dict[tuple, DefaultsList] = {}
        # Merged configs by id() of the shared defaults list they were merged from. A merge is
        # kept from its second job on: a sweep whose jobs all choose other groups (loss=a,b,c)
        # pays no copy.
        self.merged: dict[int, DictConfig] = {}
        self.merged_once: set[int] = set()

    def create_defaults_list(
        self,
        repo: IConfigRepository,
        config_name: str | None,
        overrides_list: list[Override],
        prepend_hydra: bool,
        skip_missing: bool,
    ) -> DefaultsList:
        def create() -> DefaultsList:
            return HYDRA_CREATE_DEFAULTS_LIST(
                repo=repo,
                config_name=config_name,
                overrides_list=overrides_list,
                prepend_hydra=prepend_hydra,
                skip_missing=skip_missing,
            )

        # Hydra's own split of the overrides into value overrides and group choices
        job_overrides = Overrides(repo=repo, overrides_list=overrides_list)
        value_overrides = {id(override) for override in job_overrides.config_overrides}
        choices = [override for override in overrides_list if id(override) not in value_overrides]
        if any(override.input_line is None for override in choices):
            return create()  # overrides made in code: no text to recognise them by
        sources = tuple((source.provider, source.path) for source in repo.get_sources())
        key = (config_name, prepend_hydra, skip_missing, sources)
        key += tuple(override.input_line for override in choices)
        shared = self.defaults_lists.get(key)
        if shared is None:
            shared = self.defaults_lists[key] = create()
        # Hydra reads known_choices from `overrides`; the value overrides are this job's
        with_job_values = copy.copy(shared.overrides)
        with_job_values.config_overrides = job_overrides.config_overrides
        return DefaultsList(
            defaults=shared.defaults,
            defaults_tree=shared.defaults_tree,
            config_overrides=job_overrides.config_overrides,
            overrides=with_job_values,
        )

    def compose(
        self, loader: ConfigLoaderImpl, defaults: list[ResultDefault], repo: IConfigRepository
    ) -> DictConfig:
        # the shared defaults lists are alive (in defaults_lists): their ids name no other list
        shared = id(defaults)
        if shared in self.merged:
            return copy.deepcopy(self.merged[shared])  # Hydra's composition changes the config
        merged = ConfigLoaderImpl._compose_config_from_defaults_list(loader, defaults, repo)
        if shared in self.merged_once and len(self.merged) < MOST_KEPT_CONFIGS:
            self.merged[shared] = copy.deepcopy(merged)
        elif any(kept.defaults is defaults for kept in self.defaults_lists.values()):
            self.merged_once.add(shared)
        return merged


HYDRA_CREATE_DEFAULTS_LIST = config_loader_impl.create_defaults_list


@contextlib.contextmanager
def sharing_what_group_choices_decide(loader: ConfigLoader) -> Iterator[None]:
    """While the sweep's jobs are composed: Hydra's own loader composes them with
    SharedByChoices (any other loader composes as it does)."""
    hydra_loader = loader.loader if isinstance(loader, ComposedOnce) else loader
    if not isinstance(hydra_loader, ConfigLoaderImpl):
        yield
        return
    shared = SharedByChoices()
    # Hydra's loader calls its module's create_defaults_list; no other composition runs
    # while the sweep's jobs are composed (before the first job starts)
    config_loader_impl.create_defaults_list = shared.create_defaults_list
    hydra_loader._compose_config_from_defaults_list = functools.partial(
        shared.compose, hydra_loader
    )
    try:
        yield
    finally:
        config_loader_impl.create_defaults_list = HYDRA_CREATE_DEFAULTS_LIST
        del hydra_loader._compose_config_from_defaults_list


def composing_once(hydra_context: HydraContext, config: DictConfig) -> HydraContext:
    """The context the launcher gets: with ComposedOnce when it runs the jobs in this process
    (a launcher that runs them elsewhere composes them there)."""
    if OmegaConf.select(config, "hydra.launcher._target_") != IN_PROCESS_LAUNCHER:
        return hydra_context
    return dataclasses.replace(
        hydra_context, config_loader=ComposedOnce(hydra_context.config_loader)
    )


def sweep(sweeper, arguments: list[str]) -> list[Sequence[JobReturn]]:
    """GridSweeper.sweep: check every job, launch them all, report the counts."""
    loader = sweeper.hydra_context.config_loader
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(
        [*sweeper._parse_config(), *arguments]
    )
    sweeper.overrides = sweeper.split_arguments(overrides, sweeper.max_batch_size)
    jobs = [job for batch in sweeper.overrides for job in batch]
    keep = loader.keep if isinstance(loader, ComposedOnce) else None
    try:
        with parsing_each_file_once(loader), sharing_what_group_choices_decide(loader):
            skipped = check_sweep_jobs(loader, sweeper.config, jobs, sweeper.check, keep=keep)
    except ConfigError as error:
        print(f"metric-run: error: {error}", file=sys.stderr)
        sys.exit(2)
    sweep_dir = Path(sweeper.config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(sweeper.config, sweep_dir / "multirun.yaml")
    returns, first = [], 0
    try:
        while not sweeper.is_done():
            batch = sweeper.get_job_batch()
            returns.append(sweeper.launcher.launch(batch, initial_job_idx=first))
            first += len(batch)
    finally:  # a sweep cut short leaves no hash for a later sweep's job in the same folder
        PRECHECKED_HASHES.clear()
    report_counts([r for results in returns for r in results], set(skipped), sweep_dir)
    return returns


def report_counts(results: list[JobReturn], skipped: set[int], sweep_dir: Path) -> None:
    failed = [r for r in results if r.status == JobStatus.FAILED]
    done = len(results) - len(failed) - len(skipped)
    print(
        f"\nsweep: {done} done, {len(failed)} failed, {len(skipped)} skipped "
        f"({sweep_dir / SWEEP_LOG})"
    )
    for result in failed:
        print(f"  failed: {shlex.join(result.overrides)}: {failure_reason(result)}")
    if failed:
        sys.exit(1)


def failure_reason(result: JobReturn) -> str:
    """The job's recorded one-line reason (job.json), else the exception's first line."""
    run_dir = result.hydra_cfg.hydra.runtime.output_dir if result.hydra_cfg else None
    job = read_job(run_dir) if run_dir else None
    if job and job.get("reason"):
        return job["reason"]
    error = result._return_value  # the launcher keeps the job's exception here
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
