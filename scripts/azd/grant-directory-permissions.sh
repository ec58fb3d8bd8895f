#!/usr/bin/env bash
# One-time tenant admin step for the mailbox onboarding function app (docs/deploy.md, "One-time
# admin steps"). Runs as the azd postprovision hook, and can be run on its own by an admin.
#
# It gives the app's managed identity what Azure Resource Manager cannot:
#   - Microsoft Graph application permissions (when the template did not declare them itself,
#     i.e. grantDirectoryPermissions=false), and Exchange.ManageAsApp on Office 365 Exchange Online;
#   - the Exchange Administrator directory role, which Exchange Online requires of an app that
#     runs admin cmdlets (New-ServicePrincipal, Add-MailboxPermission).
# It prints each grant and why before making it, changes nothing that is already in place, and
# reports permissions the identity holds but no longer needs. Limiting Mail.Send to the sender
# mailbox happens in Exchange Online PowerShell: the script prints those commands.
#
# Who can run it: Privileged Role Administrator or Global Administrator (granting application
# permissions and directory roles). Sign in first with `az login --tenant <tenant>`.
#
# Usage: grant-directory-permissions.sh [--check] [--yes] [--prune]
#   --check  report only; exit 3 if something is missing
#   --yes    grant without asking
#   --prune  also remove app role assignments the identity no longer needs
set -euo pipefail

readonly GRAPH_APP_ID="00000003-0000-0000-c000-000000000000"
readonly EXCHANGE_APP_ID="00000002-0000-0ff1-ce00-000000000000"
readonly EXCHANGE_ADMIN_ROLE_TEMPLATE_ID="29232cdf-9323-42fd-ade2-1d097af3e4de"

check_only=false
assume_yes=false
prune=false
for arg in "$@"; do
  case "$arg" in
    --check) check_only=true ;;
    --yes) assume_yes=true ;;
    --prune) prune=true ;;
    -h | --help)
      sed -n '2,20p' "$0"
      exit 0
      ;;
    *)
      echo "unknown option: $arg" >&2
      exit 2
      ;;
  esac
done

# Values come from the azd environment: azd exports them to hooks; run standalone, ask azd.
setting() {
  local name="$1" value="${!1:-}"
  if [[ -z "$value" ]] && command -v azd >/dev/null 2>&1; then
    value="$(azd env get-value "$name" 2>/dev/null || true)"
  fi
  printf '%s' "$value"
}

principal_id="$(setting MANAGED_IDENTITY_PRINCIPAL_ID)"
client_id="$(setting MANAGED_IDENTITY_CLIENT_ID)"
identity_name="$(setting MANAGED_IDENTITY_NAME)"
graph_roles="$(setting GRAPH_APP_ROLES)"
exchange_roles="$(setting EXCHANGE_APP_ROLES)"
declared="$(setting DIRECTORY_PERMISSIONS_DECLARED)"
mail_sender="$(setting MAIL_SENDER)"
mail_scoping="$(setting MAIL_SEND_SCOPING)"
exchange_role_model="${EXCHANGE_ROLE_MODEL:-$(setting EXCHANGE_ROLE_MODEL)}"
exchange_role_model="${exchange_role_model:-entraRole}"

for required in principal_id client_id graph_roles exchange_roles; do
  if [[ -z "${!required}" ]]; then
    echo "Missing $required: run 'azd provision' first (its outputs feed this script)." >&2
    exit 2
  fi
done

graph="$(az cloud show --query endpoints.microsoftGraphResourceId --output tsv)"
graph="${graph%/}"

# Why each permission is needed, printed next to every grant.
why() {
  case "$1" in
    Application.ReadWrite.OwnedBy) echo "register the IMAP/POP apps, add their client secrets, create their service principals; limited to apps this identity owns" ;;
    Application.Read.All) echo "'grant' consent mode: assigning an app role is documented with AppRoleAssignment.ReadWrite.All and Application.Read.All (read all app registrations and service principals; only with enableGrantMode)" ;;
    AppRoleAssignment.ReadWrite.All) echo "'grant' consent mode: assign IMAP.AccessAsApp/POP.AccessAsApp after an admin approves in the app (tenant-wide privilege; only with enableGrantMode)" ;;
    Domain.Read.All) echo "read the tenant's verified domains: admin addresses of a request must be in them" ;;
    Mail.Send) echo "send consent and approval emails from $mail_sender (scope it with an application access policy, below)" ;;
    Exchange.ManageAsApp) echo "run Exchange Online admin cmdlets app-only: New-ServicePrincipal, Add-MailboxPermission, Get-CASMailbox" ;;
    ExchangeAdministrator) echo "Exchange Online authorises app-only admin cmdlets by the app's Entra role; Exchange Administrator covers New-ServicePrincipal and mailbox permissions" ;;
    *) echo "required by the deployment" ;;
  esac
}

confirm() {
  $assume_yes && return 0
  if [[ ! -t 0 ]]; then
    echo "  (not a terminal: re-run with --yes to grant)"
    return 1
  fi
  local answer
  read -r -p "  Grant it now? [y/N] " answer
  [[ "$answer" == [yY]* ]]
}

missing=0
failed=0

service_principal_id() {
  az rest --method get --url "$graph/v1.0/servicePrincipals(appId='$1')?\$select=id" --query id --output tsv
}

app_role_id() {
  az rest --method get --url "$graph/v1.0/servicePrincipals(appId='$1')?\$select=appRoles" \
    --query "appRoles[?value=='$2' && contains(allowedMemberTypes, 'Application')].id | [0]" --output tsv
}

# Grants each app role of one resource (Graph or Exchange Online) that is not yet assigned.
ensure_app_roles() {
  local resource_app_id="$1" resource_name="$2" roles_csv="$3"
  local resource_id role role_id assigned
  resource_id="$(service_principal_id "$resource_app_id")"
  assigned="$(az rest --method get --url "$graph/v1.0/servicePrincipals/$principal_id/appRoleAssignments" \
    --query "value[?resourceId=='$resource_id'].appRoleId" --output tsv)"
  IFS=',' read -r -a wanted <<<"$roles_csv"
  for role in "${wanted[@]}"; do
    [[ -z "$role" ]] && continue
    role_id="$(app_role_id "$resource_app_id" "$role")"
    if [[ -z "$role_id" ]]; then
      echo "! $resource_name has no application permission '$role'" >&2
      failed=$((failed + 1))
      continue
    fi
    if grep -qx "$role_id" <<<"$assigned"; then
      echo "= $resource_name $role: already granted"
      continue
    fi
    echo "+ $resource_name $role (application permission) to $identity_name"
    echo "  why: $(why "$role")"
    missing=$((missing + 1))
    $check_only && continue
    if confirm; then
      az rest --method post --url "$graph/v1.0/servicePrincipals/$resource_id/appRoleAssignedTo" \
        --headers "Content-Type=application/json" \
        --body "{\"principalId\":\"$principal_id\",\"resourceId\":\"$resource_id\",\"appRoleId\":\"$role_id\"}" \
        --output none && missing=$((missing - 1)) && echo "  granted" || failed=$((failed + 1))
    fi
  done
  report_unneeded "$resource_id" "$resource_name" "$resource_app_id" "$roles_csv" "$assigned"
}

# Least privilege over time: a permission from an earlier configuration (say grant mode, since
# switched off) stays until someone removes it, because deployments only add.
report_unneeded() {
  local resource_id="$1" resource_name="$2" resource_app_id="$3" roles_csv="$4" assigned="$5"
  local role_id value assignment_id
  for role_id in $assigned; do
    value="$(az rest --method get --url "$graph/v1.0/servicePrincipals(appId='$resource_app_id')?\$select=appRoles" \
      --query "appRoles[?id=='$role_id'].value | [0]" --output tsv)"
    if [[ ",$roles_csv," == *",$value,"* ]]; then
      continue
    fi
    assignment_id="$(az rest --method get --url "$graph/v1.0/servicePrincipals/$principal_id/appRoleAssignments" \
      --query "value[?appRoleId=='$role_id' && resourceId=='$resource_id'].id | [0]" --output tsv)"
    echo "- $resource_name $value is granted but no longer needed by this configuration"
    if $prune && ! $check_only; then
      az rest --method delete --url "$graph/v1.0/servicePrincipals/$principal_id/appRoleAssignments/$assignment_id" \
        --output none && echo "  removed" || failed=$((failed + 1))
    else
      echo "  remove with: $0 --prune"
    fi
  done
}

ensure_exchange_admin_role() {
  local filter count
  filter="principalId eq '$principal_id' and roleDefinitionId eq '$EXCHANGE_ADMIN_ROLE_TEMPLATE_ID'"
  count="$(az rest --method get \
    --url "$graph/v1.0/roleManagement/directory/roleAssignments?\$filter=$(printf '%s' "$filter" | sed 's/ /%20/g;s/'"'"'/%27/g')" \
    --query "length(value)" --output tsv)"
  if [[ "$count" != "0" ]]; then
    echo "= Entra role Exchange Administrator: already assigned"
    return
  fi
  echo "+ Entra role Exchange Administrator (tenant-wide) to $identity_name"
  echo "  why: $(why ExchangeAdministrator)"
  missing=$((missing + 1))
  $check_only && return
  if confirm; then
    az rest --method post --url "$graph/v1.0/roleManagement/directory/roleAssignments" \
      --headers "Content-Type=application/json" \
      --body "{\"principalId\":\"$principal_id\",\"roleDefinitionId\":\"$EXCHANGE_ADMIN_ROLE_TEMPLATE_ID\",\"directoryScopeId\":\"/\"}" \
      --output none && missing=$((missing - 1)) && echo "  assigned" || failed=$((failed + 1))
  fi
}

echo "Managed identity: $identity_name (client id $client_id, object id $principal_id)"
echo "Microsoft Graph: $graph"
echo

if [[ "$declared" == "true" ]]; then
  echo "The deployment declared the app role assignments (Microsoft Graph Bicep extension); checking them."
fi
ensure_app_roles "$GRAPH_APP_ID" "Microsoft Graph" "$graph_roles"
ensure_app_roles "$EXCHANGE_APP_ID" "Office 365 Exchange Online" "$exchange_roles"

if [[ "$exchange_role_model" == "entraRole" ]]; then
  ensure_exchange_admin_role
else
  echo "= Entra role Exchange Administrator: not used (EXCHANGE_ROLE_MODEL=$exchange_role_model);"
  echo "  give the identity an Exchange role group instead (docs/deploy.md, 'Narrower than Exchange Administrator')."
fi

echo
echo "Exchange Online PowerShell (Connect-ExchangeOnline as an Exchange admin), once:"
echo "Limit sending to $mail_sender (docs/deploy.md, 'Restrict Mail.Send to the sender mailbox'):"
if [[ "$mail_scoping" == "applicationAccessPolicy" ]]; then
  cat <<PS
  New-DistributionGroup -Name "Mail onboarding sender" -Type Security -Members "$mail_sender"
  New-ApplicationAccessPolicy -AppId $client_id -PolicyScopeGroupId "Mail onboarding sender" -AccessRight RestrictAccess -Description "Mail onboarding: send only as $mail_sender"
  Test-ApplicationAccessPolicy -Identity "$mail_sender" -AppId $client_id
PS
else
  cat <<PS
  New-ServicePrincipal -AppId $client_id -ObjectId $principal_id -DisplayName "$identity_name"
  New-ManagementScope -Name "Mail onboarding sender" -RecipientRestrictionFilter "PrimarySmtpAddress -eq '$mail_sender'"
  New-ManagementRoleAssignment -Name "Mail onboarding Mail.Send" -App $principal_id -Role "Application Mail.Send" -CustomResourceScope "Mail onboarding sender"
  Test-ServicePrincipalAuthorization -Identity $principal_id -Resource "$mail_sender"
PS
fi
echo

if ((failed > 0)); then
  echo "$failed grant(s) failed: the signed-in account needs Privileged Role Administrator or Global Administrator." >&2
  exit 1
fi
if ((missing > 0)); then
  echo "$missing grant(s) still missing: an admin runs $0 once." >&2
  $check_only && exit 3
  exit 1
fi
echo "All Entra ID permissions are in place. Run the Exchange Online commands above once, if not done yet."
