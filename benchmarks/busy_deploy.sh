#!/bin/bash
# deploy_safe of the one-table test migration while a raw client adds a row to auth_group every
# 50 ms (refused while frozen, writing again after); prints the report's freeze window and steps.
# Usage: benchmarks/busy_deploy.sh CHECKOUT DATABASE_URL REPORT_PATH (a scratch database: it
# gains rows in auth_group, and the test app's migration is unapplied again afterwards).
set -u
cd "${1:?checkout}"; URL=${2:?database url}; OUT=${3:?report}
export DJANGO_ENV=test DATABASE_URL=$URL DJANGO_SETTINGS_MODULE=tests.deploy_apps.settings DEPLOY_TEST_APPS=schema
B=$(mktemp -d)
.venv/bin/python - "$URL" > "$B/writer.log" 2>&1 <<'PY' &
import sys, time, psycopg
db = psycopg.connect(sys.argv[1], autocommit=True)
ok = refused = 0
while True:
    try:
        db.execute("INSERT INTO auth_group (name) VALUES (%s)", [f"busy {time.time_ns()}"])
        ok += 1
    except psycopg.Error:
        refused += 1
    print(ok, refused, flush=True)
    time.sleep(0.05)
PY
W=$!
sleep 2
.venv/bin/python manage.py deploy_safe --allow-dirty --backup-dir "$B" --report "$OUT" > "$B/deploy.log" 2>&1; echo "deploy exit $?"
kill $W; tail -1 "$B/writer.log"
.venv/bin/python manage.py migrate schema zero --noinput -v0
rm -rf "$B"
.venv/bin/python - "$OUT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("freeze_window_s", r["freeze_window_s"], "migrate_s", r["migrate_s"])
for s in r["steps"]:
    if s["name"].startswith("pre-check"): continue
    d = s.get("detail") or {}
    print(f'{s["seconds"]:7.3f} {s["name"]}', {k: d[k] for k in ("copied_again", "written_since_the_copy", "delta") if k in d})
PY
