// dsr-export: everything `azd up` deploys. Subscription scope so that one command also creates
// the resource group. Modules, one concern each:
//   identity         user-assigned managed identity (the app's only identity)
//   monitoring       Log Analytics + Application Insights (Entra-only ingestion)
//   host-storage     AzureWebJobsStorage (identity only), task hub, dsr-requests queue, package
//   durable-task-scheduler  durableBackend=durableTaskScheduler only: the managed task hub
//                    backend (scheduler, task hub, retention, the app's data role)
//   keyvault         callback signing secret (and the export key, in stored-policy mode)
//   export-storage   where Graph writes exports; backstop lifecycle deletion (the app deletes
//                    first, EXPORT_RETENTION_DAYS after a DSR ended); SAS-mode dependent access
//   evidence-role    the custom role that can read and append evidence, nothing else (first:
//                    it must replicate before evidence-storage assigns it)
//   receipt-signer-role  the custom role that can read the receipt key and sign, nothing else
//                    (first, for the same reason: keyvault assigns it)
//   evidence-storage the DSR evidence logs: append-only, version-level immutability (WORM) for
//                    evidenceRetentionDays, no shared key; the app's custom role can append only
//   function-app     Flex Consumption app + every app setting the code reads, App Service
//                    authentication (Entra ID), access restrictions, its log to Log Analytics
//   entra-app        the app's own Entra registration with the DSR.* app roles (Graph extension)
//   multi-tenant-app tenancy=multi only: the multi-tenant app registration (Graph application
//                    permissions asked of each customer tenant) whose federated identity
//                    credential trusts the identity: no secret (Graph extension)
//   network          networkIsolation only: VNet for the app, private endpoints and DNS zones
//                    (the scheduler's too, when there is one)
//   graph-app-roles  User.Export.All + User.Read.All for the identity (Graph Bicep extension),
//                    last: after the function app, so the identity has replicated in Entra ID
//   workbook         the operators' Azure Monitor workbook over the app's log lines
//   alerts           scheduled log alert rules over the same lines (+ action group)
// Key Vault, the export and evidence accounts' blob services and the app send their logs to the
// workspace.
// The risks the defaults accept, and the parameter that closes each, are in docs/security.md.
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

@description('Days after a DSR ended before the app deletes its export data (a daily timer). Give the privacy team that long to deliver it.')
@minValue(1)
@maxValue(3650)
param exportRetentionDays int = 30

@description('Margin in days of the export account\'s lifecycle rule, the backstop behind the app\'s own deletion: it deletes any export blob exportTimeoutDays + exportRetentionDays + this many days after the blob was created.')
@minValue(1)
@maxValue(365)
param exportBackstopMarginDays int = 14

@description('Days after a DSR ended before the app purges its durable history (status, task hub). At least exportRetentionDays: the history is what finds the data to delete.')
@minValue(1)
@maxValue(3650)
param historyRetentionDays int = 90

@description('Days a poisoned request message (its whole body, the data subject\'s UPN included) or a rejection record stays in the host storage queues before the daily retention run deletes it. 3: the poison alert fires at once and three days span a weekend; the ticket keeps the request, the logs its ids.')
@minValue(1)
@maxValue(30)
param queueRetentionDays int = 3

@description('Minutes a delivery (download) link lives: a read+list SAS on the DSR\'s export container, signed with a user delegation key.')
@minValue(1)
@maxValue(1440)
param downloadLinkMinutes int = 60

@description('Days a custom regulation ({days: N}) deadline may be extended by. 0: no extension.')
@minValue(0)
@maxValue(366)
param customExtensionMaxDays int = 0

@description('Language of the subject\'s package when the request names none.')
@allowed(['en', 'de'])
param packageLanguage string = 'en'

@description('Bytes above which the subject\'s package is split into numbered parts (default 4 GiB).')
@minValue(1048576)
param packagePartMaxBytes int = 4294967296

@description('off, or required: each subject\'s package is reviewed (files may be withheld with a reason code) and approved before a download link to it is handed out.')
@allowed(['off', 'required'])
param packageReview string = 'off'

@description('single: the managed identity calls Graph in its own tenant. multi: the app serves the tenants of its registry through a multi-tenant app registration (created by the deployment, or multiTenantClientId) which trusts the managed identity as a federated identity credential (docs/deploy.md, "Many tenants").')
@allowed(['single', 'multi'])
param tenancy string = 'single'

@description('Client id of a multi-tenant app registration you created yourself, with its federated identity credential (tenancy=multi, docs/deploy.md). Empty: with tenancy=multi the deployment creates both with the Microsoft Graph Bicep extension (modules/multi-tenant-app.bicep). Ignored with single.')
param multiTenantClientId string = ''

@description('Principals bound to every tenant by configuration (tenancy=multi), separated by commas: Entra object, application or group ids, or function key fingerprints (sha256:<16 hex digits>). The first operators, who make the other bindings (docs/security.md, "Callers bound to tenants"). Keep it to the operators\' group.')
param tenancyOperators string = ''

@description('Display name of the multi-tenant app registration the deployment creates: what each customer tenant\'s administrator sees on the consent prompt and in Enterprise applications. Empty: "DSR export tenants (<environmentName>)".')
@maxLength(120)
param multiTenantAppDisplayName string = ''

@description('An https page of yours where Entra sends a customer tenant\'s administrator after the consent prompt (registered on the multi-tenant app the deployment creates; dsrctl tenants consent-link --redirect-uri names it). Empty: none.')
param multiTenantRedirectUri string = ''

@description('The organisation\'s profile for the subject\'s package (JSON; docs/organisation.sample.json). Empty: packaging is refused, naming this setting.')
param organisationProfile string = ''

@description('Days each DSR\'s evidence log is immutable (cannot be overwritten or deleted, by anyone) from its creation. 2192 = 6 years.')
@minValue(1)
@maxValue(146000)
param evidenceRetentionDays int = 2192

@description('Lock the evidence account\'s retention policy. Irreversible: it can then only be extended, and the account cannot be deleted before the last log\'s retention ends. Set it only on a later provision (an account is created Unlocked), docs/security.md.')
param evidenceImmutabilityLocked bool = false

@description('Redundancy of the evidence account, which keeps its logs for years: Standard_LRS (one datacenter), Standard_ZRS (three zones, where offered), Standard_GRS or Standard_GZRS (a copy in the paired region).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param evidenceStorageSku string = 'Standard_LRS'

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

@description('Which export account key signs the SAS (stored-policy mode): the one written to Key Vault. Switch it to rotate keys without breaking exports in flight (docs/security.md, "Rotating the export account key").')
@allowed([
  'key1'
  'key2'
])
param exportAccountKeyName string = 'key1'

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

// ---------- callers: Entra ID in front of the app ----------

@description('App Service authentication with Entra ID: callers may send a token for the app\'s registration, whose app roles (DSR.Submit, DSR.Read, DSR.Manage) the app checks. false: function keys only.')
param enableEntraAuth bool = true

@description('Client id of an app registration you created yourself (az ad app create, docs/deploy.md). Empty: the deployment creates it with the Microsoft Graph Bicep extension.')
param entraAppClientId string = ''

@description('Application ID URI (api://...) of that registration. Used only with entraAppClientId.')
param entraAppIdentifierUri string = ''

@description('Comma-separated IP ranges (CIDR) and Azure service tags allowed to call the app, e.g. 203.0.113.0/24,198.51.100.7/32. Empty: anyone may try (a function key or token is still needed). Include the range that runs azd deploy.')
param appAllowedIpRanges string = ''

// ---------- Graph ----------

@description('Microsoft Graph root. National clouds: https://graph.microsoft.us, https://dod-graph.microsoft.us, https://microsoftgraph.chinacloudapi.cn.')
param graphBaseUrl string = 'https://graph.microsoft.com'

@description('Graph API version for exportPersonalData and its dataPolicyOperation (app setting GRAPH_API_VERSION). beta: the version the project was specified against; Microsoft does not support beta APIs in production use. v1.0: generally available, the same calls. See docs/deploy.md, Choosing the Graph API version.')
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

@description('Key Vault purge protection (on by default): nobody can purge the vault or a secret before its 90-day soft-delete period ends. Irreversible once on; azd down --purge then cannot purge the vault. false only for throwaway environments.')
param keyVaultPurgeProtection bool = true

@description('Private networking: the app gets VNet integration, host storage, the export account, the evidence account and Key Vault private endpoints, and host storage, the evidence account and Key Vault close their public endpoints (the export account cannot: Graph writes to it). false (default): public endpoints, an accepted risk (docs/security.md).')
param networkIsolation bool = false

@description('Address space of the virtual network (networkIsolation only), a /23 or larger: its first /24 is the app subnet, the second the private endpoints.')
param vnetAddressPrefix string = '10.90.0.0/23'

// ---------- Durable Functions task hub ----------

@description('Where Durable Functions keeps every DSR\'s orchestration state (the task hub). azureStorage: tables, queues and blobs in the host storage account. durableTaskScheduler: the managed Durable Task Scheduler, Microsoft\'s recommended backend, with its dashboard. Host storage is deployed in both modes (the Functions host, the dsr-requests queue, the deployment package). Switch only with no DSR in flight: the two backends do not share state (docs/deploy.md).')
@allowed([
  'azureStorage'
  'durableTaskScheduler'
])
param durableBackend string = 'azureStorage'

@description('Durable Task Scheduler SKU (durableBackend=durableTaskScheduler only). dedicated: 1 capacity unit, billed per month, finished DSRs kept 90 days. consumption: billed per action, finished DSRs kept 30 days at most (docs/deploy.md, "Choosing the task hub backend").')
@allowed([
  'dedicated'
  'consumption'
])
param durableTaskSchedulerSku string = 'dedicated'

@description('Days Log Analytics keeps telemetry.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('E-mail (a team mailbox) the DSR alert rules notify through an action group created for them. Empty, with no alertActionGroupId: the rules fire in the portal only (docs/operations.md, Alerts).')
param alertEmailAddress string = ''

@description('Resource id of an existing action group for the DSR alert rules; overrides alertEmailAddress.')
param alertActionGroupId string = ''

@description('Hours without progress after which a DSR in flight raises the dsr-stalled alert.')
@minValue(2)
@maxValue(36)
param alertStalledAfterHours int = 6

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
// The export account's lifecycle rule (a backstop) counts from a blob's creation, the app's
// retention from the DSR's end, which comes up to exportTimeoutDays later: so the rule waits for
// both, plus a margin, and never deletes data the app still keeps.
var exportBackstopDays = exportTimeoutDays + exportRetentionDays + exportBackstopMarginDays
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'
// Entra ID registration: created here unless the caller brought one (entraAppClientId).
var createEntraApp = enableEntraAuth && empty(entraAppClientId)
// api://<tenant id>/<name>: a format Entra ID accepts for new registrations in every tenant.
var entraIdentifierUri = 'api://${tenant().tenantId}/dsr-export-${resourceToken}'
var allowedIpRanges = empty(appAllowedIpRanges) ? [] : split(replace(appAllowedIpRanges, ' ', ''), ',')
var useScheduler = durableBackend == 'durableTaskScheduler'
// The multi-tenant app registration (and its federated credential): created here with
// tenancy=multi unless the caller brought one (multiTenantClientId).
var isMultiTenant = tenancy == 'multi'
var createMultiTenantApp = isMultiTenant && empty(multiTenantClientId)
// host.json's hubName: the same task hub name on either backend.
var taskHubName = 'dsrexport'

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
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
    networkIsolation: networkIsolation
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
    networkIsolation: networkIsolation
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
    receiptSignerRoleId: receiptSignerRole.outputs.id
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
    backstopDays: exportBackstopDays
    softDeleteDays: exportSoftDeleteDays
    keyVaultName: keyVault.outputs.name
    accountKeyName: exportAccountKeyName
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

// The evidence account's custom role, created first (it needs nothing but the account's name):
// evidence-storage assigns it only after the Log Analytics workspace and the account exist,
// minutes later, by when the definition has replicated. Created and assigned at once, the
// assignment can fail ("RoleDefinitionDoesNotExist") and the first `azd up` with it.
module evidenceRole 'modules/evidence-role.bicep' = {
  name: 'evidence-role'
  scope: rg
  params: {
    storageAccountName: 'stevd${resourceToken}'
  }
}

module receiptSignerRole 'modules/receipt-signer-role.bicep' = {
  name: 'receipt-signer-role'
  scope: rg
  params: {
    vaultName: 'kv-dsr-${resourceToken}'
  }
}

module evidenceStorage 'modules/evidence-storage.bicep' = {
  name: 'evidence-storage'
  scope: rg
  params: {
    name: 'stevd${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    retentionDays: evidenceRetentionDays
    lockRetentionPolicy: evidenceImmutabilityLocked
    skuName: evidenceStorageSku
    networkIsolation: networkIsolation
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
    appenderRoleId: evidenceRole.outputs.id
  }
}

module durableTaskScheduler 'modules/durable-task-scheduler.bicep' = if (useScheduler) {
  name: 'durable-task-scheduler'
  scope: rg
  params: {
    name: 'dts-dsr-${resourceToken}'
    location: location
    tags: tags
    taskHubName: taskHubName
    sku: durableTaskSchedulerSku
    appPrincipalId: identity.outputs.principalId
    networkIsolation: networkIsolation
    privateAddressPrefix: vnetAddressPrefix
  }
}

module network 'modules/network.bicep' = if (networkIsolation) {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-dsr-${resourceToken}'
    location: location
    tags: tags
    addressPrefix: vnetAddressPrefix
    hostStorageId: hostStorage.outputs.id
    exportStorageId: exportStorage.outputs.id
    evidenceStorageId: evidenceStorage.outputs.id
    keyVaultId: keyVault.outputs.id
    schedulerId: useScheduler ? durableTaskScheduler.outputs.id : ''
  }
}

module entraApp 'modules/entra-app.bicep' = if (createEntraApp) {
  name: 'entra-app'
  scope: rg
  params: {
    uniqueName: 'dsr-export-${resourceToken}'
    displayName: 'DSR export (${environmentName})'
    identifierUri: entraIdentifierUri
  }
}

// tenancy=multi: the multi-tenant app registration that trusts the identity as its federated
// credential (no secret anywhere), the Graph application permissions each customer tenant's
// administrator is asked for, and its service principal in this (the home) tenant.
module multiTenantApp 'modules/multi-tenant-app.bicep' = if (createMultiTenantApp) {
  name: 'multi-tenant-app'
  scope: rg
  params: {
    uniqueName: 'dsr-export-tenants-${resourceToken}'
    displayName: empty(multiTenantAppDisplayName) ? 'DSR export tenants (${environmentName})' : multiTenantAppDisplayName
    identityPrincipalId: identity.outputs.principalId
    redirectUri: multiTenantRedirectUri
  }
}

// MULTI_TENANT_CLIENT_ID: the registration made above, the one the caller brought, or none
// (tenancy=single).
var tenancyClientId = isMultiTenant ? (createMultiTenantApp ? multiTenantApp.outputs.appId : multiTenantClientId) : ''

// What App Service authentication validates tokens against: the registration made above, the
// one the caller brought, or none (enableEntraAuth=false: function keys only).
var apiAppId = enableEntraAuth ? (createEntraApp ? entraApp.outputs.appId : entraAppClientId) : ''
var apiIdentifierUri = enableEntraAuth ? (createEntraApp ? entraApp.outputs.identifierUri : entraAppIdentifierUri) : ''

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
    evidenceBlobEndpoint: evidenceStorage.outputs.blobEndpoint
    exportRetentionDays: exportRetentionDays
    historyRetentionDays: historyRetentionDays
    queueRetentionDays: queueRetentionDays
    downloadLinkMinutes: downloadLinkMinutes
    customExtensionMaxDays: customExtensionMaxDays
    packageLanguage: packageLanguage
    packagePartMaxBytes: packagePartMaxBytes
    packageReview: packageReview
    tenancy: tenancy
    multiTenantClientId: tenancyClientId
    tenancyOperators: tenancyOperators
    organisationProfile: organisationProfile
    sasMode: exportSasMode
    exportAccountKeySecretUri: exportStorage.outputs.accountKeySecretUri
    callbackSecretUri: keyVault.outputs.callbackSecretUri
    receiptKeyUri: keyVault.outputs.receiptKeyUri
    receiptKeyPublishDays: evidenceRetentionDays
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
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
    // networkIsolation: the app subnet, which network.bicep outputs once the private
    // endpoints exist, so the app never starts while its storage is unreachable.
    virtualNetworkSubnetId: networkIsolation ? network.outputs.appSubnetId : ''
    allowedIpRanges: allowedIpRanges
    authClientId: apiAppId
    authAudience: apiIdentifierUri
    durableBackend: durableBackend
    // The scheduler's endpoint and task hub: read from the module's outputs, so the app waits
    // for the task hub and the identity's role on it.
    durableTaskSchedulerEndpoint: useScheduler ? durableTaskScheduler.outputs.endpoint : ''
    durableTaskHubName: useScheduler ? durableTaskScheduler.outputs.taskHubName : ''
  }
  // No dependsOn needed: the params above read outputs of monitoring, hostStorage, keyVault,
  // exportStorage, evidenceStorage (and network, entraApp, durableTaskScheduler when deployed),
  // so ARM finishes those modules (with their role assignments) first and the app never starts
  // before its identity can reach storage, the evidence logs, secrets, the task hub and
  // telemetry.
}

// Last: Entra ID refuses an app role assignment to a managed identity whose service principal
// has not replicated yet ("Not a valid reference update", microsoftgraph/msgraph-bicep-types
// #193), and the identity is created at the start of this deployment. Waiting for the function
// app (which waits for monitoring, the storage accounts, Key Vault and their role assignments)
// puts minutes between the two. Nothing needs the grants earlier: the app has no code until
// `azd deploy`, which runs after provisioning (docs/deploy.md, "What Azure can refuse and why").
module graphAppRoles 'modules/graph-app-roles.bicep' = if (grantGraphAppRoles) {
  name: 'graph-app-roles'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
  }
  dependsOn: [
    functionApp
  ]
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

// Scheduled log alert rules over the same log lines, each with a runbook entry in
// docs/operations.md; they read telemetry only (no identity, no role).
module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    location: location
    tags: tags
    actionGroupId: alertActionGroupId
    alertEmailAddress: alertEmailAddress
    stalledAfterHours: alertStalledAfterHours
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
output EVIDENCE_STORAGE_ACCOUNT_NAME string = evidenceStorage.outputs.name
output EXPORT_SAS_MODE string = exportSasMode
output KEY_VAULT_NAME string = keyVault.outputs.name
output GRAPH_APP_ROLES_GRANTED bool = grantGraphAppRoles
output NETWORK_ISOLATION bool = networkIsolation
output EXPORT_ACCOUNT_KEY_IN_USE string = isUserDelegation ? '' : exportAccountKeyName
// The app's Entra registration (empty when enableEntraAuth=false). Named apart from the
// entraApp* parameters' variables so that azd does not feed them back as "bring your own".
output API_APP_ID string = apiAppId
output API_IDENTIFIER_URI string = apiIdentifierUri
// tenancy=multi: the multi-tenant app's client id (the consent link names it), whether created
// here or brought; empty with single. Named apart from the multiTenantClientId parameter's
// variable (MULTI_TENANT_CLIENT_ID) so that azd does not feed it back as "bring your own".
output TENANCY_APP_ID string = tenancyClientId
output OPERATIONS_WORKBOOK_ID string = workbook.outputs.id
// The task hub backend; with the scheduler, its name and the task hub's dashboard
// (docs/operations.md, "Durable Task Scheduler"). Empty with durableBackend=azureStorage.
output DURABLE_BACKEND string = durableBackend
output DURABLE_TASK_SCHEDULER_NAME string = useScheduler ? durableTaskScheduler.outputs.name : ''
output DURABLE_TASK_HUB_NAME string = taskHubName
output DURABLE_TASK_DASHBOARD_URL string = useScheduler ? durableTaskScheduler.outputs.dashboardUrl : ''
