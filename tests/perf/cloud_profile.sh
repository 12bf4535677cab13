#!/bin/bash
# Profile llm-proxy serving Bedrock and Vertex AI calls on the mock upstream with py-spy
# (pip install py-spy; needs wrk): where the credential costs on the request path. Only
# 127.0.0.1 (ports 19311-19312); everything started here is stopped here, by PID.
set -u
cd "$(dirname "$0")/../.."
D=$(mktemp -d)
MP=19311; PP=19312
.venv/bin/python - <<PY > $D/sa.json
import json
from llm_proxy.testing.mock.vertex import mock_service_account
print(json.dumps(mock_service_account("http://127.0.0.1:$MP/mock/oauth2/token")))
PY
cat > $D/config.yaml <<YAML
server: {host: 127.0.0.1, port: $PP}
master_keys: [{name: bench, key: sk-bench-0123456789}]
providers:
  - name: bed
    provider_type: bedrock
    region: us-east-1
    api_base: http://127.0.0.1:$MP
    aws_access_key_id: AKIAMOCKMOCKMOCK0000
    aws_secret_access_key: mockmockmockmockmockmockmockmockmockmock
    model_mapping: {on-bedrock: "anthropic.claude-3-5-sonnet-20240620-v1:0"}
  - name: vtx
    provider_type: vertex
    project: mock-project
    location: us-east5
    api_base: http://127.0.0.1:$MP
    credentials_file: $D/sa.json
    model_mapping: {on-vertex: "gemini-2.5-flash"}
YAML
.venv/bin/llm-proxy mock-upstream --port $MP > $D/mock.log 2>&1 & MPID=$!
LOG_LEVEL=warning .venv/bin/llm-proxy serve --config $D/config.yaml > $D/proxy.log 2>&1 & PPID2=$!
for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$PP/health && break; sleep 0.1; done
for model in on-bedrock on-vertex; do
  cat > $D/post.lua <<LUA
wrk.method = "POST"
wrk.body = '{"model":"$model","messages":[{"role":"user","content":"Say hello in one word."}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-0123456789"
LUA
  curl -s http://127.0.0.1:$PP/v1/chat/completions -H 'Authorization: Bearer sk-bench-0123456789' -H 'Content-Type: application/json' -d "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" | head -c 300; echo
  wrk -t1 -c16 -d12s -s $D/post.lua http://127.0.0.1:$PP/v1/chat/completions > $D/wrk-$model.txt 2>&1 &
  WPID=$!
  sleep 1
  .venv/bin/py-spy record --pid $PPID2 --duration 8 --rate 250 --format raw --output $D/$model.raw > /dev/null 2>&1
  wait $WPID
done
kill $PPID2 $MPID; wait $PPID2 $MPID 2>/dev/null
echo "profiles and wrk output in $D (py-spy raw format: one stack and its count per line)"
