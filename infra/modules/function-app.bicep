// The function app on Flex Consumption (Linux, Python 3.11), running as the user-assigned
// identity. Every app setting the code reads is set here, and only those (tests/infra
// checks this against dsr_export.settings.SETTINGS).

@description('Function app name.')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Host storage endpoints (identity-based AzureWebJobsStorage).')
param hostBlobEndpoint string
param hostQueueEndpoint string
param hostTableEndpoint string

@description('URL of the blob container holding the deployment package.')
param deploymentContainerUrl string

@description('Application Insights connection string (not a secret: local auth is disabled).')
param appInsightsConnectionString string

@description('Blob endpoint of the export account.')
param exportBlobEndpoint string

@description('Blob endpoint of the evidence account (the immutable, append-only DSR logs).')
param evidenceBlobEndpoint string

@description('Days after a DSR ended before the app deletes its exported data.')
param exportRetentionDays int

@description('Days after a DSR ended before the app purges its durable history.')
param historyRetentionDays int

@description('Days a poisoned request or a rejection record stays queued.')
param queueRetentionDays int

@description('Minutes a delivery (download) link lives.')
param downloadLinkMinutes int

@description('Language of the subject\'s package when the request names none (en or de).')
param packageLanguage string

@description('Bytes above which the subject\'s package is split into numbered parts.')
param packagePartMaxBytes int

@description('off, or required: packages are reviewed and approved before delivery.')
param packageReview string

@description('single or multi (a tenant registry, through the multi-tenant app).')
param tenancy string

@description('Client id of the multi-tenant app registration (tenancy=multi).')
param multiTenantClientId string

@description('Principals bound to every tenant by configuration (tenancy=multi), by commas.')
param tenancyOperators string

@description('The organisation\'s profile for the package (JSON: organisation, DPO, GDPR Art. 15(1) processing information); see docs/delivery.md.')
param organisationProfile string

@description('Days a custom {days: N} regulation\'s deadline may be extended by (0: none).')
param customExtensionMaxDays int

@description('stored-policy or user-delegation.')
@allowed([
  'stored-policy'
  'user-delegation'
])
param sasMode string

@description('Versionless Key Vault URI of the export account key secret (stored-policy mode).')
param exportAccountKeySecretUri string

@description('Versionless Key Vault URI of the callback signing secret.')
param callbackSecretUri string

@description('Versionless id of the Key Vault key that signs package receipts.')
param receiptKeyUri string

@description('Days a retired receipt key version stays in the JWKS: the evidence retention.')
param receiptKeyPublishDays int

@description('Lifetime in days of the SAS given to Graph.')
param sasLifetimeDays int

@description('Overall limit in days after which a DSR ends timed_out.')
param exportTimeoutDays int

@description('Comma-separated host names callbacks may be sent to.')
param callbackAllowedHosts string

@description('Microsoft Graph root URL.')
param graphBaseUrl string

@description('Graph API version for exportPersonalData and its dataPolicyOperation: beta or v1.0.')
param graphApiVersion string

@description('Days before the legal deadline that a warning is raised.')
param deadlineWarningDays int

@description('How many days in the past a request\'s receivedAt may lie.')
param receivedAtMaxAgeDays int

@description('App roles of callers with a function key and no Entra token ("none": Entra only).')
param functionKeyRoles string

@description('Maximum instances the app scales out to.')
param maximumInstanceCount int

@description('Instance memory size in MB.')
param instanceMemoryMB int

@description('Log Analytics workspace that receives the app\'s FunctionAppLogs.')
param logAnalyticsWorkspaceId string

@description('Subnet (delegated to Microsoft.App/environments) the app\'s outbound traffic goes through; empty: no VNet integration.')
param virtualNetworkSubnetId string = ''

@description('Who may call the app: IPv4/IPv6 ranges in CIDR notation, or Azure service tags (e.g. AzureCloud). Empty: no restriction (the default); otherwise everything else is refused with 403 before it reaches the app.')
param allowedIpRanges array = []

@description('Where the task hub lives: azureStorage (host storage, host.json as it is) or durableTaskScheduler (app settings override host.json\'s storage provider and hub name).')
@allowed([
  'azureStorage'
  'durableTaskScheduler'
])
param durableBackend string = 'azureStorage'

@description('Durable Task Scheduler endpoint (https://...durabletask.io); durableTaskScheduler backend only.')
param durableTaskSchedulerEndpoint string = ''

@description('Task hub name on that scheduler; durableTaskScheduler backend only.')
param durableTaskHubName string = ''

@description('Client (application) id of the app\'s Entra registration; empty: App Service authentication is off.')
param authClientId string = ''

@description('Application ID URI of that registration (api://...): the audience of v1.0 tokens.')
param authAudience string = ''

var isStoredPolicy = sasMode == 'stored-policy'
var useScheduler = durableBackend == 'durableTaskScheduler'
var restrictAccess = !empty(allowedIpRanges)
// One Allow rule per range or service tag, in the order given; whatever matches none is denied.
var accessRules = [
  for (range, i) in allowedIpRanges: {
    name: 'allowed-${i}'
    action: 'Allow'
    priority: 100 + i
    ipAddress: range
    tag: contains(range, '/') ? 'Default' : 'ServiceTag'
  }
]
var entraAuth = !empty(authClientId)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    // Linux.
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  // azd finds the app to deploy by this tag (service "api" in azure.yaml).
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    // Requests over plain HTTP are redirected, so function keys never travel in the clear.
    httpsOnly: true
    // Key Vault references are resolved with the user-assigned identity (the default would
    // be a system-assigned identity, which this app does not have).
    keyVaultReferenceIdentity: identityId
    // networkIsolation: outbound traffic leaves through the app subnet, so host storage, the
    // export and evidence accounts and Key Vault are reached on their private endpoints
    // (network.bicep).
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      // No ftpsState: Flex Consumption has no FTP(S) at all and refuses the property (400,
      // infra/rules/flex-consumption-refused.toml); code arrives only through the deployment
      // container, and basic publishing credentials are off (below).
      http20Enabled: true
      // Access restrictions (allowedIpRanges): when set, only those ranges and service tags
      // reach the app; the deployment endpoint (scm, used by `azd deploy`) follows the same
      // list, so include the range of whatever deploys.
      ipSecurityRestrictions: accessRules
      ipSecurityRestrictionsDefaultAction: restrictAccess ? 'Deny' : 'Allow'
      scmIpSecurityRestrictionsUseMain: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          // The package is read with the app identity, so host storage needs no key.
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      // On Flex Consumption the language is set here, not by FUNCTIONS_WORKER_RUNTIME.
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Basic (user name + password) publishing credentials off: deployments use Entra ID only.
// `location` is not in the REST model of this proxy resource, yet ARM answers "The parameter
// location has an invalid value" without it (infra/rules/rest-models.toml, exceptions). No
// `ftp` policy: Flex Consumption has no FTP endpoint to switch off.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  location: location
  properties: {
    allow: false
  }
}

// Settings for the platform and SDKs (they read them on the app's behalf).
var platformSettings = {
  // Identity-based host storage: no connection string, no key.
  AzureWebJobsStorage__blobServiceUri: hostBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: hostQueueEndpoint
  AzureWebJobsStorage__tableServiceUri: hostTableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // azure-identity (ManagedIdentityCredential / DefaultAzureCredential) picks this identity.
  AZURE_CLIENT_ID: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  // Entra authentication for telemetry (local auth is disabled on the component).
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

// Settings our code reads (dsr_export.settings.SETTINGS).
var appSettings = {
  GRAPH_BASE_URL: graphBaseUrl
  GRAPH_API_VERSION: graphApiVersion
  GRAPH_TIMEOUT_SECONDS: '30'
  EXPORT_STORAGE_BLOB_ENDPOINT: exportBlobEndpoint
  EXPORT_SAS_MODE: sasMode
  EXPORT_SAS_LIFETIME_DAYS: string(sasLifetimeDays)
  EXPORT_POLL_MAX_INTERVAL_SECONDS: '3600'
  EXPORT_POLL_ROUNDS_PER_HISTORY: '20'
  EXPORT_TIMEOUT_DAYS: string(exportTimeoutDays)
  // A Key Vault reference: the secret value never appears in the site configuration.
  CALLBACK_SIGNING_SECRET: '@Microsoft.KeyVault(SecretUri=${callbackSecretUri})'
  CALLBACK_ALLOWED_HOSTS: callbackAllowedHosts
  DEADLINE_WARNING_DAYS: string(deadlineWarningDays)
  RECEIVED_AT_MAX_AGE_DAYS: string(receivedAtMaxAgeDays)
  AUTH_FUNCTION_KEY_ROLES: functionKeyRoles
  // The evidence logs' own account (immutable); the app's role there can append, not delete.
  EVIDENCE_STORAGE_BLOB_ENDPOINT: evidenceBlobEndpoint
  // Retention is the app's job (a daily timer); the export account's lifecycle rule is only a
  // later backstop (export-storage.bicep).
  EXPORT_RETENTION_DAYS: string(exportRetentionDays)
  HISTORY_RETENTION_DAYS: string(historyRetentionDays)
  QUEUE_RETENTION_DAYS: string(queueRetentionDays)
  DOWNLOAD_LINK_MINUTES: string(downloadLinkMinutes)
  CUSTOM_EXTENSION_MAX_DAYS: string(customExtensionMaxDays)
  PACKAGE_LANGUAGE: packageLanguage
  PACKAGE_PART_MAX_BYTES: string(packagePartMaxBytes)
  PACKAGE_REVIEW: packageReview
  TENANCY: tenancy
  MULTI_TENANT_CLIENT_ID: multiTenantClientId
  TENANCY_OPERATORS: tenancyOperators
  ORGANISATION_PROFILE: organisationProfile
  // Callers' Entra tokens are validated by the app itself against this tenant's OpenID
  // configuration and keys (docs/security.md, "Who may call"); an empty AUTH_CLIENT_ID (no
  // registration) means function keys only.
  AUTH_AUTHORITY_HOST: environment().authentication.loginEndpoint
  AUTH_TENANT_ID: tenant().tenantId
  AUTH_CLIENT_ID: authClientId
  AUTH_APP_ID_URI: authAudience
  // Package receipts: the key (versionless, so a rotation needs no redeployment) and how long
  // old key versions stay published (the receipts' issuer is WEBSITE_HOSTNAME's, set by Azure).
  RECEIPT_SIGNING_KEY_ID: receiptKeyUri
  RECEIPT_KEY_PUBLISH_DAYS: string(receiptKeyPublishDays)
  // CALLBACK_ALLOW_LOOPBACK_UNSAFE is never set here: it is for the offline host's tests only.
}

// stored-policy mode only: the export account key, as a Key Vault reference. In
// user-delegation mode the setting is absent, so no key can be used by mistake.
var storedPolicySettings = {
  EXPORT_STORAGE_ACCOUNT_KEY: '@Microsoft.KeyVault(SecretUri=${exportAccountKeySecretUri})'
}

// durableTaskScheduler backend only: the Functions host reads these on the app's behalf
// (dsr_export.settings.PLATFORM_SETTINGS). AzureFunctionsJobHost__<path> overrides that path of
// host.json, so the same package runs on either backend and host.json keeps Azure Storage for
// the default mode and the offline host. The connection string holds no secret: the endpoint,
// and which managed identity signs in (the app's, by client id); the grant is the identity's
// Durable Task Data Contributor role on the task hub (durable-task-scheduler.bicep).
var schedulerSettings = {
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
  AzureFunctionsJobHost__extensions__durableTask__hubName: durableTaskHubName
  DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${durableTaskSchedulerEndpoint};Authentication=ManagedIdentity;ClientID=${identityClientId}'
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(
    platformSettings,
    appSettings,
    isStoredPolicy ? storedPolicySettings : {},
    useScheduler ? schedulerSettings : {}
  )
}

// App Service authentication (Entra ID) in front of the app. It validates a bearer token when
// one is sent (issuer: this tenant; audience: the app's registration) and hands the app its
// claims in X-MS-CLIENT-PRINCIPAL, removing any such header a client sent. It is a second wall
// only: the app reads neither that header nor WEBSITE_AUTH_ENABLED, and validates the bearer
// token itself (AUTH_* settings; docs/security.md, "Who may call"). Requests without a token
// still pass (AllowAnonymous): every HTTP route is
// at function level, so the Functions host demands a key from them, and the app gives key
// holders only the roles in AUTH_FUNCTION_KEY_ROLES. No token store, no login redirects, no
// client secret: the app only validates tokens, it never signs anyone in.
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (entraAuth) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
      runtimeVersion: '~1'
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    httpSettings: {
      requireHttps: true
      forwardProxy: {
        convention: 'NoProxy'
      }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          // Tokens of this tenant only.
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          // The Application ID URI (v1.0 tokens); the client id (v2.0 tokens, which the
          // registration asks for) is always accepted as an audience as well.
          allowedAudiences: empty(authAudience) ? [] : [
            authAudience
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

// The Functions host's and the app's own log (FunctionAppLogs) in Log Analytics, beside the
// audit logs of Key Vault and the export account, so one workspace answers "who did what".
resource appLog 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'app-to-log-analytics'
  scope: site
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
