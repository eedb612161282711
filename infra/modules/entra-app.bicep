// The app's own Entra ID registration: the API that ticketing systems and operators get tokens
// for, with the app roles the code checks (dsr_export.domain.callers.Role), and its service
// principal (where roles are assigned). App Service authentication (function-app.bicep,
// authsettingsV2) validates tokens issued for it. Created with the Microsoft Graph Bicep
// extension, like graph-app-roles.bicep.
//
// The person (or pipeline) deploying needs, in Entra ID, the right to create applications
// (Application Developer, Cloud Application Administrator or Application Administrator).
// Tenants that cannot use the extension set enableEntraAuth=false, or create the registration
// with `az ad app create` from app-roles.json and pass entraAppClientId (docs/deploy.md).

extension microsoftGraphV1

@description('Unique name of the registration in the tenant (the extension\'s idempotency key).')
param uniqueName string

@description('Display name shown in Entra ID (App registrations, Enterprise applications).')
param displayName string

@description('Application ID URI, the audience of the tokens: api://<tenant id>/<string>, one of the formats Entra ID accepts for new registrations.')
param identifierUri string

// The roles, with stable ids: a role's id is what an assignment refers to, so changing one
// would silently drop every assignment of it. The same file feeds `az ad app create
// --app-roles @infra/modules/app-roles.json` for tenants without the extension.
var appRoles = loadJsonContent('app-roles.json')

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  // This tenant only: no other organisation's accounts can get a token for the API.
  signInAudience: 'AzureADMyOrg'
  identifierUris: [
    identifierUri
  ]
  api: {
    // v2.0 access tokens: issuer login.microsoftonline.com/<tenant>/v2.0, audience the
    // client id (App Service authentication accepts the client id as an audience itself).
    requestedAccessTokenVersion: 2
  }
  appRoles: appRoles
}

resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
  // Users (and groups) get a token for the API only once assigned a role: nobody in the
  // tenant can sign in to it by default. Applications are assigned roles explicitly anyway.
  appRoleAssignmentRequired: true
}

output appId string = app.appId
output identifierUri string = identifierUri
output servicePrincipalId string = servicePrincipal.id
