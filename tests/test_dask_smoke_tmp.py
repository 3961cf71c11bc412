import time
import dask_kit
from migrate.config import load_config
from migrate.transfer.run import RunOptions, run_plan


def test_smoke(tmp_path, write_config, bucket, topic, emulators):
    config, plan = dask_kit.build(tmp_path, write_config, bucket, topic, objects=50, logs=2, events_per_log=300)
    cfg = load_config(config)
    t = time.monotonic()
    s = run_plan(cfg, plan, options=RunOptions(engine="dask", engine_workers=2))
    print(time.monotonic() - t, s.to_dict())
    assert s.status == "ok"
