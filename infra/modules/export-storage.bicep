// The export account: Microsoft Graph writes each data subject's export into one container
// here, through a container SAS the app mints. It holds personal data, so it is a separate
// account from host storage (separate keys, separate access, separate retention), and
// everything in it is deleted automatically after a fixed number of days.

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

@description('Days after creation when export blobs are deleted. Must exceed EXPORT_TIMEOUT_DAYS plus the time you need to deliver the export.')
@minValue(2)
@maxValue(365)
param retentionDays int

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

// Export data must not outlive its purpose (GDPR storage limitation): every blob, block or
// append (Graph writes RequestInfo.json as an append blob), is deleted N days after it was
// created, whatever happens to the DSR. With soft delete on, a deleted blob stays
// recoverable for softDeleteDays more, then is gone.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-exports-after-retention'
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
                  daysAfterCreationGreaterThan: retentionDays
                }
              }
              snapshot: {
                delete: {
                  daysAfterCreationGreaterThan: retentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

// user-delegation mode only. Why Storage Blob Data Contributor: the app creates one container
// per DSR, lists it to build the manifest and writes the manifest blob; the role also carries
// generateUserDelegationKey/action, which signs the SAS for Graph. Scope: this account,
// because containers are created per request at run time (a container scope cannot exist
// before the container does). In stored-policy mode the app does all of this with the
// account key, so no data role is granted at all.
resource blobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!isStoredPolicy) {
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
