#!/usr/bin/env bash
# azd preprovision hook. Tells the template whether the link-signing key already exists in the Key
# Vault (parameter linkSigningKeyExists), so that provisioning again never rotates it: a new key
# would invalidate every approval link and completion callback already sent.
#
# It asks Azure Resource Manager (control plane), which says whether the secret exists without
# revealing its value, so the deployer needs no data-plane access to the vault.
set -euo pipefail

vault="${AZURE_KEY_VAULT_NAME:-}"
group="${AZURE_RESOURCE_GROUP:-}"
subscription="${AZURE_SUBSCRIPTION_ID:-}"
secret="${LINK_SIGNING_KEY_SECRET_NAME:-link-signing-key}"

exists=false
if [[ -n "$vault" && -n "$group" && -n "$subscription" ]]; then
  id="/subscriptions/$subscription/resourceGroups/$group/providers/Microsoft.KeyVault/vaults/$vault/secrets/$secret"
  if err="$(az resource show --ids "$id" --query id --output tsv 2>&1 >/dev/null)"; then
    exists=true
  elif ! grep -qiE 'NotFound|could not be found' <<<"$err"; then
    # Anything but "not found" (expired login, no access) must stop here: guessing "absent" would
    # overwrite the key.
    echo "preprovision: cannot tell whether $secret exists in $vault:" >&2
    echo "$err" >&2
    exit 1
  fi
fi

echo "preprovision: link-signing key already in the vault: $exists"
azd env set LINK_SIGNING_KEY_EXISTS "$exists"
