#!/usr/bin/env bash
# The demo shop on a fresh machine: venv, packages, database, catalogue (with embeddings), server.
# Usage: demo_shop/run.sh   then open http://localhost:8000/ (admin: manage.py createsuperuser)
# The first run takes the 567 images' vectors shipped in demo_shop/data/vectors.json.xz (seconds after pip;
# `load_demo_catalogue --compute` computes them: 12 min on 2 cores of an AMD EPYC, demo_shop/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
pip install -r requirements.txt
export DJANGO_SETTINGS_MODULE=demo_shop.settings TF_CPP_MIN_LOG_LEVEL=3
# runserver runs the system checks (and shows their warnings) once; these two need not repeat them.
python manage.py migrate --noinput --skip-checks
python manage.py load_demo_catalogue --skip-checks   # idempotent: a second run changes nothing
exec python manage.py runserver 0.0.0.0:8000
