#!/usr/bin/env bash
# Grants the app's managed identity the two Microsoft Graph application permissions it needs
# (User.Export.All, User.Read.All), as app role assignments on the Microsoft Graph service
# principal. This is the script alternative to infra/modules/graph-app-roles.bicep, for
# tenants that cannot use the Microsoft Graph Bicep extension (deploy with
# GRANT_GRAPH_APP_ROLES=false, then run this).
#
# Run it signed in (az login) as someone allowed to grant application permissions: Privileged
# Role Administrator or Global Administrator (Graph: AppRoleAssignment.ReadWrite.All and
# Application.Read.All). For a managed identity the assignment is the admin consent.
#
# Usage:
#   infra/scripts/grant-graph-permissions.sh                      # principal id from azd env
#   infra/scripts/grant-graph-permissions.sh <principal-object-id>
#   APP_IDENTITY_PRINCIPAL_ID=<id> infra/scripts/grant-graph-permissions.sh
# Options (environment):
#   GRAPH_URL    Graph root for az rest (default https://graph.microsoft.com; national clouds
#                use their own, e.g. https://graph.microsoft.us)
#   DRY_RUN=1    print what would be granted, change nothing
#
# Idempotent: roles already assigned are reported and skipped.
set -euo pipefail

GRAPH_URL="${GRAPH_URL:-https://graph.microsoft.com}"
GRAPH_URL="${GRAPH_URL%/}"
# Microsoft Graph's application id: the same in every tenant.
GRAPH_APP_ID="00000003-0000-0000-c000-000000000000"
# The permissions (app role values) to grant; ids are looked up on the Graph service principal.
ROLES=("User.Export.All" "User.Read.All")

die() {
  echo "grant-graph-permissions: $*" >&2
  exit 1
}

command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is required"

principal_id="${1:-${APP_IDENTITY_PRINCIPAL_ID:-}}"
if [[ -z "$principal_id" ]] && command -v azd >/dev/null 2>&1; then
  principal_id="$(azd env get-value APP_IDENTITY_PRINCIPAL_ID 2>/dev/null || true)"
fi
[[ -n "$principal_id" ]] || die "no principal id: pass it as the first argument or set APP_IDENTITY_PRINCIPAL_ID"
[[ "$principal_id" =~ ^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$ ]] ||
  die "principal id must be an object id (GUID), got '$principal_id'"

graph_sp_id="$(az rest --method GET \
  --url "$GRAPH_URL/v1.0/servicePrincipals(appId='$GRAPH_APP_ID')?\$select=id" \
  --query id --output tsv)"
[[ -n "$graph_sp_id" ]] || die "Microsoft Graph service principal not found in this tenant"

# Make sure the principal exists (and is what we think it is) before granting anything.
principal_name="$(az rest --method GET \
  --url "$GRAPH_URL/v1.0/servicePrincipals/$principal_id?\$select=displayName" \
  --query displayName --output tsv)" ||
  die "no service principal with object id $principal_id (is it the managed identity's principal id, not its client id?)"

existing="$(az rest --method GET \
  --url "$GRAPH_URL/v1.0/servicePrincipals/$principal_id/appRoleAssignments" \
  --query "value[?resourceId=='$graph_sp_id'].appRoleId" --output tsv)"

for role in "${ROLES[@]}"; do
  role_id="$(az rest --method GET \
    --url "$GRAPH_URL/v1.0/servicePrincipals/$graph_sp_id?\$select=appRoles" \
    --query "appRoles[?value=='$role' && contains(allowedMemberTypes, 'Application')].id | [0]" \
    --output tsv)"
  [[ -n "$role_id" ]] || die "Microsoft Graph has no application permission named $role"

  if grep -qix "$role_id" <<<"$existing"; then
    echo "$role ($role_id): already granted to $principal_name"
    continue
  fi
  if [[ "${DRY_RUN:-0}" == "1" ]]; then
    echo "$role ($role_id): would grant to $principal_name ($principal_id)"
    continue
  fi
  az rest --method POST \
    --url "$GRAPH_URL/v1.0/servicePrincipals/$graph_sp_id/appRoleAssignedTo" \
    --headers "Content-Type=application/json" \
    --body "{\"principalId\": \"$principal_id\", \"resourceId\": \"$graph_sp_id\", \"appRoleId\": \"$role_id\"}" \
    --output none
  echo "$role ($role_id): granted to $principal_name ($principal_id)"
done
