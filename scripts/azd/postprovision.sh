#!/usr/bin/env bash
# azd postprovision hook: says where the app is, then runs the one-time admin step
# (grant-directory-permissions.sh), which changes nothing that is already in place. azure.yaml
# marks this hook continueOnError: a deployer who is not a tenant admin still gets the code
# deployed, and hands the printed command to an admin.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

echo "Function app: ${AZURE_FUNCTION_APP_NAME:-?}  ${FUNCTION_BASE_URL:-}"
echo "Key Vault:    ${AZURE_KEY_VAULT_NAME:-?}"
echo

exec "$here/grant-directory-permissions.sh" "$@"
