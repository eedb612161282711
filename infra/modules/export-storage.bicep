// The export account: Microsoft Graph writes each data subject's export into one container
// here, through a container SAS the app mints. It holds personal data, so it is a separate
// account from host storage (separate keys, separate access, separate retention). The app
// deletes each DSR's container itself EXPORT_RETENTION_DAYS after the DSR ended; a lifecycle
// rule deletes whatever is left later, as a backstop. The evidence logs are not here: they
// live in their own, immutable account (evidence-storage.bicep), out of the rule's reach.

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Principal (object) id of the app identity.')
param appPrincipalId string

@description('How the SAS handed to Graph is signed: stored-policy (account key, revocable, up to 60+ days) or user-delegation (Entra, no key, at most 7 days).')
@allowed([
  'stored-policy'
  'user-delegation'
])
param sasMode string

@description('Backstop: days after creation when the lifecycle rule deletes any export blob the app has not deleted itself. Must exceed the longest an export can run (EXPORT_TIMEOUT_DAYS) plus EXPORT_RETENTION_DAYS, or it would delete data the app still keeps.')
@minValue(2)
@maxValue(36500)
param backstopDays int

@description('Days a deleted blob or container stays recoverable. Deleted data is retained this much longer.')
@minValue(1)
@maxValue(365)
param softDeleteDays int

@description('Key Vault that receives the account key (stored-policy mode only).')
param keyVaultName string

@description('Secret name for the account key in Key Vault.')
param accountKeySecretName string = 'export-storage-account-key'

@description('Which of the two account keys is written to Key Vault, and so signs every new SAS (stored-policy mode). Rotation switches it: docs/security.md, "Rotating the export account key".')
@allowed([
  'key1'
  'key2'
])
param accountKeyName string = 'key1'

@description('Log Analytics workspace that receives the blob service\'s read, write and delete log.')
param logAnalyticsWorkspaceId string

var isStoredPolicy = sasMode == 'stored-policy'
// listKeys() returns key1 then key2.
var accountKeyIndex = (accountKeyName == 'key2') ? 1 : 0

// Built-in role definition ids (verified against the Azure built-in roles list):
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  // StorageV2 standard: Graph needs append blobs (RequestInfo.json), which premium
  // block-blob accounts refuse (StorageLocationShouldSupportAppendBlobs).
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    // stored-policy: a service SAS tied to a stored access policy is signed with the account
    // key, so shared key must stay enabled on this (export-only) account. The key lives only
    // in Key Vault. user-delegation: no key is used anywhere, so shared key is switched off
    // and a leaked key (there is none in use) could not be replayed.
    allowSharedKeyAccess: isStoredPolicy
    // Portal and CLI users default to their Entra identity, not the key.
    defaultToOAuthAuthentication: true
    // Exports are personal data: HTTPS only (the SAS also says spr=https), TLS 1.2 minimum.
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    // No anonymous read of anyone's export, ever.
    allowBlobPublicAccess: false
    // Exports must not be replicated into another tenant.
    allowCrossTenantReplication: false
    // Graph writes from Microsoft's service addresses, which are not published as a range
    // (and Graph is no trusted service a network rule could name): the public endpoint must
    // stay reachable, even with networkIsolation=true, where the app itself uses a private
    // endpoint. Access is by SAS (Graph: one container, add/create/write) or key/identity
    // (the app). An accepted risk: docs/security.md.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    accessTier: 'Hot'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    // A mistaken delete of an export (by a person or a bug) can be undone for a few days.
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
    // No versioning: old versions would outlive the lifecycle rule's retention.
    isVersioningEnabled: false
  }
}

// Who read, wrote or deleted what in the account that holds the exports: every request to the
// blob service (Graph's writes through the SAS, the app's container, policy and manifest calls,
// a person's download), with the caller's address, how it authenticated and a hash of the
// credential (StorageBlobLogs.AuthenticationHash). Metrics (Transaction) show the volume.
resource blobAccessLog 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'blob-access-to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'StorageRead'
        enabled: true
      }
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

// Export data must not outlive its purpose (GDPR storage limitation). The mechanism is the
// app: a daily timer deletes each DSR's container EXPORT_RETENTION_DAYS after the DSR ended.
// This rule is the backstop for whatever the app missed (a failed run, a container the app no
// longer knows of): every blob, block or append (Graph writes RequestInfo.json as an append
// blob) is deleted backstopDays after it was created, whatever happens to the DSR. It has no
// prefix filter, so nothing that must be kept may live in this account (the evidence logs have
// their own). With soft delete on, a deleted blob stays recoverable for softDeleteDays more.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'backstop-delete-exports'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
                'appendBlob'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterCreationGreaterThan: backstopDays
                }
              }
              snapshot: {
                delete: {
                  daysAfterCreationGreaterThan: backstopDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

// Why Storage Blob Data Contributor, in both SAS modes: the app deletes export containers
// (erasure, and the retention timer EXPORT_RETENTION_DAYS after a DSR ended), and mints the
// delivery link: a read+list SAS signed with a user delegation key, never the account key. The
// role carries generateUserDelegationKey/action (all that Storage Blob Delegator holds), and a
// user delegation SAS grants at most what its signer's roles allow, so the link needs the
// role's read and list as well. In user-delegation mode it also creates the container per DSR,
// lists it for the manifest and writes the manifest, and signs Graph's SAS. In stored-policy
// mode the app holds the account key too (it signs Graph's SAS), so this role grants the
// identity nothing the key does not. Scope: this account, because containers are created per
// request at run time (a container scope cannot exist before the container does).
resource blobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, storageBlobDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// stored-policy mode only: the key is read here, at deployment, and written straight into
// Key Vault. It is never a template output, never an app setting value (the app setting is
// a Key Vault reference), and never reaches azd's .env file.
resource accountKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (isStoredPolicy) {
  parent: vault
  name: accountKeySecretName
  properties: {
    value: storage.listKeys().keys[accountKeyIndex].value
    // Says which key is in use (readable without the value: `az resource show`, see the
    // rotation procedure). The value is never an output, a setting or a log line.
    contentType: 'Azure Storage account key ${accountKeyName}'
  }
}

// stored-policy mode only. Why Key Vault Secrets User: App Service resolves the
// EXPORT_STORAGE_ACCOUNT_KEY Key Vault reference with the app identity. Scope: this one
// secret, not the vault, so the identity cannot read any other secret stored there.
resource accountKeySecretUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (isStoredPolicy) {
  name: guid(accountKeySecret.id, appPrincipalId, keyVaultSecretsUserRoleId)
  scope: accountKeySecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
// Versionless URI, so a rotated key (new secret version) is picked up without redeploying.
// Empty in user-delegation mode.
output accountKeySecretUri string = isStoredPolicy ? accountKeySecret.properties.secretUri : ''
