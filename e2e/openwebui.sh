#!/usr/bin/env bash
# End to end with Open WebUI (not part of `make test`): installs Open WebUI 0.12.4 into its
# own venv, serves the demo corpus, starts Open WebUI offline against it, and drives it with
# Playwright + Debian Chromium: two questions (the second a 5,000-character paste), a click on
# a source chip, screenshots, and a check that the service logged no 4xx for Open WebUI.
#
#   e2e/openwebui.sh [OUT_DIR]        (default e2e/out)
#   OWUI_VENV=/path/to/venv e2e/openwebui.sh   reuses an existing Open WebUI venv
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/e2e/out}"
WORK="$(mktemp -d -t openwebui-e2e-work.XXXXXX)"
OWUI_VENV="${OWUI_VENV:-$WORK/venv}"
RAG_PORT="${RAG_PORT:-8765}"
OWUI_PORT="${OWUI_PORT:-8766}"
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
mkdir -p "$OUT"

if [ -z "$CHROMIUM" ]; then
    echo "Chromium not found: apt-get install -y chromium (or set CHROMIUM=...)" >&2
    exit 2
fi
if [ ! -x "$OWUI_VENV/bin/open-webui" ]; then
    echo "== installing Open WebUI 0.12.4 into $OWUI_VENV (several minutes)"
    python3.11 -m venv "$OWUI_VENV"
    "$OWUI_VENV/bin/pip" install --quiet --upgrade pip
    # torch first, pinned as in the Makefile: anything else pulls CUDA wheels.
    "$OWUI_VENV/bin/pip" install --quiet torch==2.13.0
    "$OWUI_VENV/bin/pip" install --quiet open-webui==0.12.4
fi

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

wait_for() {  # URL SECONDS NAME
    local deadline=$((SECONDS + $2))
    until curl -sf -o /dev/null "$1"; do
        if [ $SECONDS -gt "$deadline" ]; then echo "$3 did not come up" >&2; exit 1; fi
        sleep 2
    done
}

echo "== serving the demo corpus on :$RAG_PORT (log $OUT/service.log)"
(cd "$ROOT" && RAG_INDEX_DIR="$WORK/index" PYTHONPATH="$ROOT" exec "$ROOT/.venv/bin/rag" serve \
    --host 127.0.0.1 --port "$RAG_PORT" --ingest corpus/) >"$OUT/service.log" 2>&1 &
pids+=($!)

echo "== starting Open WebUI offline on :$OWUI_PORT (log $OUT/openwebui.log)"
# A clean environment: Open WebUI's own RAG_* variables must not reach the service, and the
# service's must not reach Open WebUI. Its document embeddings use this service too.
env -i PATH="$OWUI_VENV/bin:/usr/bin:/bin" HOME="$WORK" DATA_DIR="$WORK/owui-data" \
    WEBUI_AUTH=False WEBUI_SECRET_KEY=e2e OFFLINE_MODE=true HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 ENABLE_OLLAMA_API=false ENABLE_OPENAI_API=true \
    OPENAI_API_BASE_URL="http://127.0.0.1:$RAG_PORT/v1" OPENAI_API_KEY=unused \
    DEFAULT_MODELS=rag-corpus RAG_EMBEDDING_ENGINE=openai \
    RAG_OPENAI_API_BASE_URL="http://127.0.0.1:$RAG_PORT/v1" RAG_OPENAI_API_KEY=unused \
    RAG_EMBEDDING_MODEL=intfloat/multilingual-e5-small BYPASS_EMBEDDING_AND_RETRIEVAL=true \
    ENABLE_VERSION_UPDATE_CHECK=false ANONYMIZED_TELEMETRY=false DO_NOT_TRACK=true \
    SCARF_NO_ANALYTICS=true \
    "$OWUI_VENV/bin/open-webui" serve --host 127.0.0.1 --port "$OWUI_PORT" \
    >"$OUT/openwebui.log" 2>&1 &
pids+=($!)

wait_for "http://127.0.0.1:$RAG_PORT/readyz" 900 "the service"
wait_for "http://127.0.0.1:$OWUI_PORT/health" 900 "Open WebUI"

echo "== driving Open WebUI with Chromium"
"$ROOT/.venv/bin/python" "$ROOT/e2e/openwebui_drive.py" \
    --webui "http://127.0.0.1:$OWUI_PORT" --service "http://127.0.0.1:$RAG_PORT" \
    --chromium "$CHROMIUM" --out "$OUT" --service-log "$OUT/service.log"
echo "== screenshots and logs in $OUT"
