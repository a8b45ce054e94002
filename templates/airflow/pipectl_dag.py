"""pipectl_dag.py: run pipectl from Apache Airflow (templates/airflow/README.md).

    validate -> plan -> apply | no_changes -> ingest -> sink -> backup -> status

validate   pipectl validate                              manifest errors: fail, never retried
plan       pipectl plan --detailed-exitcode              0: no changes -> no_changes (apply skipped)
                                                         2: changes    -> apply
                                                         other: fail at once, never retried
apply      pipectl apply                                 retried with backoff (resumes from the
                                                         live state; waits out a concurrent apply)
ingest     pipectl run SOURCE --max-records N            retried with backoff
sink       pipectl run SINK --until-caught-up           retried with backoff (exactly once: rows
             --duration D                                and offsets commit together); skipped
                                                         when there was nothing to drain
backup     pipectl backup create --label 'airflow RUN'   retried with backoff (a failed backup
                                                         leaves nothing behind)
status     pipectl status                                1 (unhealthy): fail, retried twice

Settings, each from the run's params (airflow dags trigger --conf / the trigger form), else from
the Airflow Variable named in brackets, else the default:
  manifest     [pipectl_manifest]      /etc/pipectl/pipeline.yaml
  pipectl      [pipectl_bin]           pipectl (on the worker's PATH)
  max_records  [pipectl_max_records]   1000  (N users per run)
  source       [pipectl_source]        randomuser   (the quickstart's names)
  sink         [pipectl_sink]          users_to_pg
  sink_max_duration [pipectl_sink_max_duration]  10m  (the sink task's bound)
The manifest's ${VAR}s (PG_DSN, PG_PASSWORD, KAFKA_BOOTSTRAP, ...) come from the worker's
environment, as with pipectl anywhere else.

Only core Airflow: BashOperator, PythonOperator, BranchPythonOperator, EmptyOperator (in
Airflow 3 they ship in apache-airflow-providers-standard, which apache-airflow installs).
Tested with Airflow 3.3.2 (tests/integration/test_airflow.sh); the imports fall back to
Airflow 2's modules (2.6 or newer: skip_on_exit_code).
"""

from __future__ import annotations

import json
import logging
import subprocess
from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
    from airflow.sdk import DAG, Param, TriggerRule
    from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.exceptions import AirflowException, AirflowFailException, AirflowSkipException
    from airflow.models.param import Param
    from airflow.operators.bash import BashOperator
    from airflow.operators.empty import EmptyOperator
    from airflow.operators.python import BranchPythonOperator, PythonOperator
    from airflow.utils.trigger_rule import TriggerRule

DAG_ID = "pipectl"
log = logging.getLogger(__name__)

# pipectl's exit codes (pipectl --help, README "Exit codes").
EXIT_OK = 0
EXIT_CHANGES = 2  # only plan --detailed-exitcode


def _setting(param: str, variable: str, default: str) -> str:
    """A Jinja expression: the run's param, else the Airflow Variable, else the default."""
    return (
        "{{ params.%s if params.%s not in (none, '') else var.value.get('%s', '%s') }}"
        % (param, param, variable, default)
    )


MANIFEST = _setting("manifest", "pipectl_manifest", "/etc/pipectl/pipeline.yaml")
PIPECTL = _setting("pipectl", "pipectl_bin", "pipectl")
MAX_RECORDS = _setting("max_records", "pipectl_max_records", "1000")
SOURCE = _setting("source", "pipectl_source", "randomuser")
SINK = _setting("sink", "pipectl_sink", "users_to_pg")
SINK_MAX_DURATION = _setting("sink_max_duration", "pipectl_sink_max_duration", "10m")

# Given to every BashOperator as environment (templated, added to the worker's own environment),
# so paths with spaces or quotes never pass through the shell's parser.
ENV = {
    "PIPECTL": PIPECTL,
    "PIPECTL_MANIFEST": MANIFEST,
    "PIPECTL_MAX_RECORDS": MAX_RECORDS,
    "PIPECTL_SOURCE": SOURCE,
}

# Where a retry can cure the failure (a broker or the database restarting, another apply or backup
# holding the lock): 3 retries, 30 s, 60 s, 120 s apart (capped at 10 min).
RETRY = {
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}
NO_RETRY = {"retries": 0}


def _pipectl(pipectl: str, manifest: str, *args: str, timeout: float | None = None):
    """Runs pipectl -f MANIFEST ARGS...; logs its output; returns (exit code, stdout)."""
    cmd = [pipectl, "-f", manifest, *args]
    log.info("running: %s", " ".join(cmd))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as e:
        # the binary is missing: no retry cures that
        raise AirflowFailException(
            f"pipectl binary '{pipectl}' not found ({e}): set the pipectl param or the "
            "pipectl_bin Variable to its path"
        ) from e
    for name, text in (("stdout", p.stdout), ("stderr", p.stderr)):
        for line in text.splitlines():
            log.info("%s: %s", name, line)
    log.info("pipectl exited %d", p.returncode)
    return p.returncode, p.stdout


def _plan(pipectl: str, manifest: str) -> str:
    """The branch: plan --detailed-exitcode decides whether apply runs."""
    rc, _ = _pipectl(pipectl, manifest, "plan", "--detailed-exitcode")
    if rc == EXIT_CHANGES:
        return "apply"
    if rc == EXIT_OK:
        return "no_changes"
    # 1 (invalid manifest, a system unreachable or refusing the credentials) or anything else:
    # fail now, without the retries a default_args change might give it. The next DAG run plans
    # again; nothing downstream runs on a plan that could not be made.
    raise AirflowFailException(f"pipectl plan failed (exit {rc}): see the log above")


def _drain(pipectl: str, manifest: str, sink: str, max_duration: str) -> int:
    """Runs the sink until it has committed every record its topic held when it started (the
    high watermark of each partition), then stops: one command, `run --until-caught-up`."""
    rc, out = _pipectl(
        pipectl, manifest, "-o", "json", "run", sink, "--until-caught-up",
        "--duration", max_duration,
    )
    try:
        summary = json.loads(out)
    except ValueError:
        summary = None
    if not isinstance(summary, dict) or "workers" not in summary:
        # run printed no summary: it never started the sink (no sink of that name, a source's
        # name, an invalid manifest or option): a person must fix it, no retry cures that
        raise AirflowFailException(
            f"pipectl run {sink} --until-caught-up did not run the sink (exit {rc}): see the log "
            "above; set the sink param or the pipectl_sink Variable to a sink of the manifest"
        )
    workers = [w for w in summary["workers"] if w.get("name") == sink]
    if rc != EXIT_OK or not workers or not all(w.get("caught_up") for w in workers):
        # --duration ran out before the backlog was committed (the log says how far it got), or
        # the sink failed (a server away): a retry resumes from the offsets stored in PostgreSQL
        errors = "; ".join(w.get("error") or "" for w in workers if w.get("error"))
        raise AirflowException(
            f"pipectl run {sink} --until-caught-up --duration {max_duration} exited {rc} "
            f"without catching up: {errors or 'see the log above'}"
        )
    # a record the sink could not convert went to the dead-letter topic: drained all the same
    done = sum(w.get("records_out", 0) + w.get("dead_letters", 0) for w in workers)
    if sum(w.get("records_in", 0) for w in workers) == 0:
        raise AirflowSkipException(f"sink '{sink}' was caught up already: nothing to drain")
    log.info("sink '%s': caught up, %d records committed (rows and dead letters)", sink, done)
    return done


with DAG(
    dag_id=DAG_ID,
    description="pipectl: plan, apply when needed, bounded ingest, drain the sink, backup, status",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # one apply, one ingest, one backup at a time
    default_args={"owner": "data", **NO_RETRY},
    params={
        "manifest": Param(None, type=["null", "string"], description="pipeline.yaml path"),
        "pipectl": Param(None, type=["null", "string"], description="pipectl binary"),
        "max_records": Param(None, type=["null", "integer"], minimum=1,
                             description="users ingested per run (N)"),
        "source": Param(None, type=["null", "string"], description="source to run"),
        "sink": Param(None, type=["null", "string"], description="sink to drain"),
        "sink_max_duration": Param(None, type=["null", "string"],
                                   description="bound of the sink task: 30s, 10m, 1h"),
    },
    tags=["pipectl"],
    doc_md=__doc__,
) as dag:
    # BashOperator fails the task on any non-zero exit; skip_on_exit_code=None turns off its
    # default (99 = skipped): pipectl's exit codes mean what the README says, nothing else.
    bash = {"env": ENV, "append_env": True, "skip_on_exit_code": None}

    validate = BashOperator(
        task_id="validate",
        bash_command='"$PIPECTL" -f "$PIPECTL_MANIFEST" validate',
        execution_timeout=timedelta(minutes=2),
        **NO_RETRY,
        **bash,
    )
    plan = BranchPythonOperator(
        task_id="plan",
        python_callable=_plan,
        op_kwargs={"pipectl": PIPECTL, "manifest": MANIFEST},
        execution_timeout=timedelta(minutes=5),
        **NO_RETRY,
    )
    apply = BashOperator(
        task_id="apply",
        bash_command='"$PIPECTL" -f "$PIPECTL_MANIFEST" apply',
        execution_timeout=timedelta(minutes=30),
        **RETRY,
        **bash,
    )
    no_changes = EmptyOperator(task_id="no_changes")
    ingest = BashOperator(
        task_id="ingest",
        bash_command='"$PIPECTL" -f "$PIPECTL_MANIFEST" run "$PIPECTL_SOURCE" '
        '--max-records "$PIPECTL_MAX_RECORDS" --no-backups',
        # runs after apply, or after no_changes when apply was skipped; not after a failure
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
        execution_timeout=timedelta(minutes=30),
        **RETRY,
        **bash,
    )
    sink = PythonOperator(
        task_id="sink",
        python_callable=_drain,
        op_kwargs={"pipectl": PIPECTL, "manifest": MANIFEST, "sink": SINK,
                   "max_duration": SINK_MAX_DURATION},
        execution_timeout=timedelta(minutes=60),
        **RETRY,
    )
    backup = BashOperator(
        task_id="backup",
        bash_command='"$PIPECTL" -f "$PIPECTL_MANIFEST" backup create --label "airflow $RUN_ID"',
        env={**ENV, "RUN_ID": "{{ run_id }}"},
        append_env=True,
        skip_on_exit_code=None,
        # a skipped sink (nothing to drain) still gets its backup
        trigger_rule=TriggerRule.NONE_FAILED,
        execution_timeout=timedelta(hours=2),
        **RETRY,
    )
    status = BashOperator(
        task_id="status",
        bash_command='"$PIPECTL" -f "$PIPECTL_MANIFEST" status',
        execution_timeout=timedelta(minutes=5),
        retries=2,
        retry_delay=timedelta(minutes=1),
        **bash,
    )

    validate >> plan >> [apply, no_changes] >> ingest >> sink >> backup >> status
