#!/usr/bin/env bash
# azd preprovision hook. Tells the template whether the link-signing key and the API function key
# already exist in the Key Vault (parameters linkSigningKeyExists, apiFunctionKeyExists), so that
# provisioning again never rotates them: a new link-signing key would invalidate every approval link
# and completion callback already sent, a new API key would lock out every caller.
#
# It asks Azure Resource Manager (control plane), which says whether a secret exists without
# revealing its value, so the deployer needs no data-plane access to the vault.
set -euo pipefail

vault="${AZURE_KEY_VAULT_NAME:-}"
group="${AZURE_RESOURCE_GROUP:-}"
subscription="${AZURE_SUBSCRIPTION_ID:-}"

# secret_exists NAME: prints true or false; stops the hook when it cannot tell.
secret_exists() {
  local secret="$1" id err
  if [[ -z "$vault" || -z "$group" || -z "$subscription" ]]; then
    echo false
    return
  fi
  id="/subscriptions/$subscription/resourceGroups/$group/providers/Microsoft.KeyVault/vaults/$vault/secrets/$secret"
  if err="$(az resource show --ids "$id" --query id --output tsv 2>&1 >/dev/null)"; then
    echo true
  elif grep -qiE 'NotFound|could not be found' <<<"$err"; then
    echo false
  else
    # Anything but "not found" (expired login, no access) must stop here: guessing "absent" would
    # overwrite the key.
    echo "preprovision: cannot tell whether $secret exists in $vault:" >&2
    echo "$err" >&2
    exit 1
  fi
}

exists="$(secret_exists "${LINK_SIGNING_KEY_SECRET_NAME:-link-signing-key}")"
echo "preprovision: link-signing key already in the vault: $exists"
azd env set LINK_SIGNING_KEY_EXISTS "$exists"

api_exists="$(secret_exists "${API_FUNCTION_KEY_SECRET_NAME:-api-function-key}")"
echo "preprovision: API function key already in the vault: $api_exists"
azd env set API_FUNCTION_KEY_EXISTS "$api_exists"
