// dsr-export: everything `azd up` deploys. Subscription scope so that one command also creates
// the resource group. Modules, one concern each:
//   identity         user-assigned managed identity (the app's only identity)
//   monitoring       Log Analytics + Application Insights (Entra-only ingestion)
//   host-storage     AzureWebJobsStorage (identity only), task hub, dsr-requests queue, package
//   keyvault         callback signing secret (and the export key, in stored-policy mode)
//   export-storage   where Graph writes exports; lifecycle deletion; SAS-mode dependent access
//   function-app     Flex Consumption app + every app setting the code reads
//   graph-app-roles  User.Export.All + User.Read.All for the identity (Graph Bicep extension)
//   workbook         the operators' Azure Monitor workbook over the app's log lines
targetScope = 'subscription'

// ---------- azd ----------

@minLength(1)
@maxLength(64)
@description('azd environment name; names and tags every resource.')
param environmentName string

@minLength(1)
@description('Region for every resource. Must offer Flex Consumption.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group name. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

// ---------- export storage and SAS ----------

@description('How the container SAS handed to Graph is signed. stored-policy: account key in Key Vault, SAS bound to a stored access policy (revocable, lives long enough for a 30-day export). user-delegation: no account key at all (shared key disabled), SAS signed with an Entra user delegation key, 7 days at most.')
@allowed([
  'stored-policy'
  'user-delegation'
])
param exportSasMode string = 'stored-policy'

@description('Days after creation when export data is deleted by the lifecycle rule. Keep it above exportTimeoutDays plus your delivery window.')
@minValue(2)
@maxValue(365)
param exportRetentionDays int = 60

@description('Days a deleted export blob/container stays recoverable (blob soft delete).')
@minValue(1)
@maxValue(365)
param exportSoftDeleteDays int = 7

@description('Lifetime in days of the SAS given to Graph. Empty: 60 in stored-policy mode, 7 in user-delegation mode (its maximum).')
@minValue(1)
@maxValue(365)
param exportSasLifetimeDays int?

@description('Days after which a DSR that Graph has not finished ends timed_out.')
@minValue(1)
@maxValue(365)
param exportTimeoutDays int = 45

// ---------- callbacks and deadlines ----------

@description('Comma-separated host names the app may send ticket callbacks to (SSRF guard), e.g. contoso.service-now.com,contoso.atlassian.net. Empty: no callbacks.')
param callbackAllowedHosts string = ''

@description('Standard Webhooks secret (whsec_ + base64) that signs ticket callbacks. azd generates it once (infra/scripts/preprovision.sh); it is stored in Key Vault and referenced from the app settings.')
@secure()
@minLength(32)
param callbackSigningSecret string

@description('Days before the legal deadline that a warning is raised.')
@minValue(1)
@maxValue(60)
param deadlineWarningDays int = 7

@description('How many days in the past a request\'s receivedAt may lie; older is refused as a typo.')
@minValue(1)
@maxValue(3650)
param receivedAtMaxAgeDays int = 400

@description('App roles of callers that send a function key and no Entra token (ticketing systems that can only send a static header); "none" requires Entra ID for every caller.')
param functionKeyRoles string = 'DSR.Submit,DSR.Read'

// ---------- Graph ----------

@description('Microsoft Graph root. National clouds: https://graph.microsoft.us, https://dod-graph.microsoft.us, https://microsoftgraph.chinacloudapi.cn.')
param graphBaseUrl string = 'https://graph.microsoft.com'

@description('Graph API version used for exportPersonalData.')
@allowed([
  'beta'
  'v1.0'
])
param graphApiVersion string = 'beta'

@description('Grant User.Export.All and User.Read.All to the app identity with the Microsoft Graph Bicep extension. Needs a deployer with AppRoleAssignment.ReadWrite.All (e.g. Privileged Role Administrator). false: run infra/scripts/grant-graph-permissions.sh instead.')
param grantGraphAppRoles bool = true

// ---------- hosting ----------

@description('Maximum instances the function app scales out to (caps cost and Graph pressure).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Instance memory (MB) of the Flex Consumption app.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Key Vault purge protection. true for production; it blocks azd down --purge of the vault.')
param keyVaultPurgeProtection bool = false

@description('Days Log Analytics keeps telemetry.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

// ---------- names ----------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'dsr-export'
}
var isUserDelegation = exportSasMode == 'user-delegation'
// A user delegation key, and so its SAS, lives 7 days at most; the stored-policy SAS must
// outlive an export that can take 30 days.
var sasLifetimeDays = exportSasLifetimeDays ?? (isUserDelegation ? 7 : 60)
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-dsr-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-dsr-${resourceToken}'
    applicationInsightsName: 'appi-dsr-${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    retentionInDays: logRetentionDays
  }
}

module hostStorage 'modules/host-storage.bicep' = {
  name: 'host-storage'
  scope: rg
  params: {
    name: 'sthost${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    deploymentContainerName: deploymentContainerName
    requestQueueName: 'dsr-requests'
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-dsr-${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    callbackSigningSecret: callbackSigningSecret
    purgeProtection: keyVaultPurgeProtection
  }
}

module exportStorage 'modules/export-storage.bicep' = {
  name: 'export-storage'
  scope: rg
  params: {
    name: 'stexp${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    sasMode: exportSasMode
    retentionDays: exportRetentionDays
    softDeleteDays: exportSoftDeleteDays
    keyVaultName: keyVault.outputs.name
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: 'func-dsr-${resourceToken}'
    planName: 'plan-dsr-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    hostBlobEndpoint: hostStorage.outputs.blobEndpoint
    hostQueueEndpoint: hostStorage.outputs.queueEndpoint
    hostTableEndpoint: hostStorage.outputs.tableEndpoint
    deploymentContainerUrl: hostStorage.outputs.deploymentContainerUrl
    appInsightsConnectionString: monitoring.outputs.connectionString
    exportBlobEndpoint: exportStorage.outputs.blobEndpoint
    sasMode: exportSasMode
    exportAccountKeySecretUri: exportStorage.outputs.accountKeySecretUri
    callbackSecretUri: keyVault.outputs.callbackSecretUri
    sasLifetimeDays: sasLifetimeDays
    exportTimeoutDays: exportTimeoutDays
    callbackAllowedHosts: callbackAllowedHosts
    graphBaseUrl: graphBaseUrl
    graphApiVersion: graphApiVersion
    deadlineWarningDays: deadlineWarningDays
    receivedAtMaxAgeDays: receivedAtMaxAgeDays
    functionKeyRoles: functionKeyRoles
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
  // No dependsOn needed: the params above read outputs of monitoring, hostStorage, keyVault and
  // exportStorage, so ARM finishes those modules (with their role assignments) first and the
  // app never starts before its identity can reach storage, secrets and telemetry.
}

module graphAppRoles 'modules/graph-app-roles.bicep' = if (grantGraphAppRoles) {
  name: 'graph-app-roles'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
  }
}

// Reads telemetry only (no identity, no role): operators open it from the Application Insights
// component. Its queries are explained in docs/operations.md.
module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    location: location
    tags: tags
  }
}

// Outputs become azd environment values (.azure/<env>/.env): names and ids only, no secrets.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output APP_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output APP_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output HOST_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name
output DSR_REQUEST_QUEUE_NAME string = hostStorage.outputs.requestQueueName
output EXPORT_STORAGE_ACCOUNT_NAME string = exportStorage.outputs.name
output EXPORT_SAS_MODE string = exportSasMode
output KEY_VAULT_NAME string = keyVault.outputs.name
output GRAPH_APP_ROLES_GRANTED bool = grantGraphAppRoles
output OPERATIONS_WORKBOOK_ID string = workbook.outputs.id
