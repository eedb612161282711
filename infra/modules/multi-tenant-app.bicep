// tenancy=multi only: the multi-tenant app registration through which one deployment reaches
// its customers' tenants (docs/deploy.md, "Many tenants from one deployment"; docs/msp.md).
// Created with the Microsoft Graph Bicep extension, like entra-app.bicep.
//
// No secret and no certificate: the app's only credential is a federated identity credential
// that trusts the deployment's user-assigned managed identity. The app asks that identity for a
// token with audience api://AzureADTokenExchange and presents it as a client assertion to a
// customer tenant's token endpoint (dsr_export/adapters/credentials.py, TenantCredentials);
// Entra answers with an app-only Graph token in every tenant whose administrator consented to
// the application permissions below, and in no other.
//
// The person (or pipeline) deploying needs the right to create applications (Application
// Developer, Cloud Application Administrator or Application Administrator), as for
// entra-app.bicep. Nothing here grants a permission: requiredResourceAccess only *asks* for
// them; each customer tenant's administrator grants them there (the consent link).

extension microsoftGraphV1

@description('Unique name of the registration in the home tenant (the extension\'s idempotency key).')
param uniqueName string

@description('Display name: what every customer tenant\'s administrator sees on the consent prompt and in Enterprise applications.')
param displayName string

@description('Principal (object) id of the app\'s user-assigned managed identity: the subject the federated credential trusts.')
param identityPrincipalId string

@description('Where Entra sends a customer tenant\'s administrator after the consent prompt (an https page of yours; the consent link names it with redirectUri). Empty: none registered.')
param redirectUri string = ''

// Microsoft Graph's application id: the same in every tenant.
var microsoftGraphAppId = '00000003-0000-0000-c000-000000000000'

// Graph application-permission (app role) ids, the same two as graph-app-roles.bicep grants
// the identity in its own tenant (checked against Graph's permissions reference).
var userExportAllRoleId = '405a51b5-8d8d-430b-9842-8be4b0e9f324' // User.Export.All
var userReadAllRoleId = 'df021288-bdef-4463-88db-98f22de89214' // User.Read.All

// The home tenant's v2.0 issuer, the issuer of the identity's tokens. loginEndpoint ends with
// a slash (https://login.microsoftonline.com/ in the global cloud) and follows the cloud the
// deployment runs in, as App Service authentication's openIdIssuer does (function-app.bicep).
var issuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'

// The audience Entra ID requires of a token presented as a federated credential, and the one
// the app asks its identity for (credentials.py, TOKEN_EXCHANGE_SCOPE). The global cloud's
// value: Microsoft documents other values for national clouds (api://AzureADTokenExchangeUSGov,
// api://AzureADTokenExchangeChina), where the Graph Bicep extension is not offered either.
var tokenExchangeAudience = 'api://AzureADTokenExchange'

// The credential's name: immutable once created, unique within the app (at most 120
// URL-friendly characters).
var credentialName = 'dsr-export-identity'

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  description: 'Exports the personal data Microsoft Entra ID holds about a user, for data subject access requests, with application permissions an administrator of each tenant grants.'
  // Accounts in any organisational directory: the customers' tenants may consent to it.
  signInAudience: 'AzureADMultipleOrgs'
  // What each tenant's administrator is asked to grant (the consent link asks for
  // {graph}/.default, i.e. exactly these): application permissions ("Role"), never delegated.
  requiredResourceAccess: [
    {
      resourceAppId: microsoftGraphAppId
      resourceAccess: [
        {
          // POST /users/{id}/exportPersonalData: the whole point; no narrower permission.
          id: userExportAllRoleId
          type: 'Role'
        }
        {
          // Polling GET /dataPolicyOperations/{id}, and resolving a UPN to an object id.
          id: userReadAllRoleId
          type: 'Role'
        }
      ]
    }
  ]
  // Only where the administrator lands after consenting (Entra appends admin_consent and
  // tenant to it): no token is ever sent there, the app signs no one in.
  web: {
    redirectUris: empty(redirectUri) ? [] : [
      redirectUri
    ]
  }
  // App instance property lock: nobody in a customer tenant can add a secret or a certificate
  // to the app's service principal there (which would let them act as the app in that tenant
  // without this deployment). The app holds none either: its credential is the one below.
  servicePrincipalLockConfiguration: {
    isEnabled: true
    allProperties: true
  }
}

// The managed identity as the app's credential (Microsoft Entra: "Configure an application to
// trust a managed identity"). One credential serves every consenting tenant; an application
// holds at most 20. Declared beside the application rather than nested in it: the same resource
// (the extension keys it by '<application uniqueName>/<credential name>', as Microsoft's
// quickstarts write the nested form), readable by the repository's Bicep checks and Checkov.
resource identityCredential 'Microsoft.Graph/applications/federatedIdentityCredentials@v1.0' = {
  name: '${app.uniqueName}/${credentialName}'
  description: 'The dsr-export deployment\'s user-assigned managed identity: the app\'s only credential.'
  issuer: issuer
  // The identity's principal (object) id: the sub claim of its tokens.
  subject: identityPrincipalId
  audiences: [
    tokenExchangeAudience
  ]
}

// The app's service principal in the home tenant: its Enterprise application here, where the
// deployer sees it. Nothing is granted to it: the managed identity keeps serving the home
// tenant itself (graph-app-roles.bicep); each customer tenant gets a service principal of its
// own when its administrator consents.
resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
}

output appId string = app.appId
output servicePrincipalId string = servicePrincipal.id
output credentialIssuer string = identityCredential.issuer
output credentialSubject string = identityCredential.subject
