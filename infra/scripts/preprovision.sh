#!/usr/bin/env bash
# azd preprovision hook: make sure the azd environment has a callback signing secret.
#
# The secret is generated once, kept in the azd environment (.azure/<env>/.env, which azd
# keeps out of git) and passed to Bicep as a @secure() parameter, which stores it in Key Vault.
# Generating it in Bicep instead (newGuid()) would rotate it on every `azd provision` and break
# every ticketing system that verifies our callbacks. To rotate on purpose:
#   azd env set CALLBACK_SIGNING_SECRET "whsec_$(openssl rand -base64 32)" && azd provision
set -euo pipefail

if [[ -n "$(azd env get-value CALLBACK_SIGNING_SECRET 2>/dev/null || true)" ]]; then
  echo "CALLBACK_SIGNING_SECRET: already set in the azd environment, kept"
  exit 0
fi

if command -v openssl >/dev/null 2>&1; then
  key="$(openssl rand -base64 32)"
else
  key="$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
fi
azd env set CALLBACK_SIGNING_SECRET "whsec_${key}" >/dev/null
echo "CALLBACK_SIGNING_SECRET: generated (Standard Webhooks format, 32 random bytes)"
