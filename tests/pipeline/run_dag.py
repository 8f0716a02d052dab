"""Run the render DAG once with dag.test(run_conf) and print {'state', 'tis', 'error'} as the last line."""

import json
import sys

from airflow.dag_processing.dagbag import DagBag


def main() -> int:
    conf = json.loads(sys.argv[1])
    bag = DagBag(dag_folder="dags")
    if bag.import_errors:
        print(json.dumps({"state": "import_error", "tis": {}, "error": str(bag.import_errors)}))
        return 1
    dag = bag.get_dag("render")
    if isinstance(conf, list):  # several runs in one process: [result, ...]
        print(json.dumps([run_once(dag, c) for c in conf]))
    else:
        print(json.dumps(run_once(dag, conf)))
    return 0


def run_once(dag, conf: dict) -> dict:
    try:
        run = dag.test(run_conf=conf)
    except Exception as e:  # bad params are refused here, before any task runs
        return {"state": "refused", "tis": {}, "error": f"{type(e).__name__}: {e}"}
    tis = {}
    for ti in run.get_task_instances():
        key = ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else "")
        tis[key] = {"state": str(ti.state), "try_number": ti.try_number, "label": ti.rendered_map_index}
    return {"state": str(run.state), "run_id": run.run_id, "tis": tis, "error": None}


if __name__ == "__main__":
    sys.exit(main())
