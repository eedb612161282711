// Microsoft Graph application permissions for the app identity, granted as app role
// assignments through the Microsoft Graph Bicep extension. For a managed identity this
// assignment *is* the admin consent: there is no consent prompt to click.
//
// The person (or pipeline) deploying needs, in Entra ID, AppRoleAssignment.ReadWrite.All and
// Application.Read.All: in practice the Privileged Role Administrator or Global Administrator
// role. Tenants that cannot use the extension set grantGraphAppRoles=false and run
// infra/scripts/grant-graph-permissions.sh instead (same two assignments, with az rest).

extension microsoftGraphV1

@description('Principal (object) id of the app identity that receives the app roles.')
param appPrincipalId string

// Microsoft Graph's application id: the same in every tenant and national cloud.
var microsoftGraphAppId = '00000003-0000-0000-c000-000000000000'

// Graph application-permission (app role) ids, verified against Graph's published permissions
// reference. Hard-coded rather than looked up by name so a review sees exactly what is granted.
var userExportAllRoleId = '405a51b5-8d8d-430b-9842-8be4b0e9f324' // User.Export.All
var userReadAllRoleId = 'df021288-bdef-4463-88db-98f22de89214' // User.Read.All

resource microsoftGraph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: microsoftGraphAppId
}

// Why User.Export.All: POST /users/{id}/exportPersonalData requires it; it is the whole
// point of the app. There is no narrower permission for this call.
resource userExportAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: appPrincipalId
  resourceId: microsoftGraph.id
  appRoleId: userExportAllRoleId
}

// Why User.Read.All: Graph documents it as the permission for polling
// GET /dataPolicyOperations/{id}, and the app needs it to resolve a UPN or e-mail address
// to the object id that exportPersonalData accepts.
resource userReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: appPrincipalId
  resourceId: microsoftGraph.id
  appRoleId: userReadAllRoleId
}

output grantedAppRoleIds array = [
  userExportAll.appRoleId
  userReadAll.appRoleId
]
