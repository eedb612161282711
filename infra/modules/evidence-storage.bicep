// The evidence account: one append-only, hash-chained log per DSR (an append blob of JSON lines
// in container dsr-evidence, dsr_export/adapters/evidence_log.py). It is what shows, years
// later, what was asked, what was done and when; so it is kept apart from the export account,
// whose lifecycle rule deletes everything, and is made write-once:
//   * version-level immutability (WORM) on the account, with a default time-based retention
//     policy: every blob version is protected for retentionDays from its creation; appends
//     stay allowed (allowProtectedAppendWrites), nothing may be overwritten or deleted;
//   * the app's identity holds a custom role that can read and append, not overwrite (no
//     blobs/write), delete, or touch an immutability policy or legal hold;
//   * no account key (shared key off), no lifecycle rule, blob and container soft delete.
// Who can still do what (Unlocked vs Locked policy, legal holds, Owners): docs/security.md,
// "The evidence log: who can do what".

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

@description('Days every evidence log is immutable (no overwrite, no delete) from its creation: the account\'s default version-level retention policy. 2192 = 6 years.')
@minValue(1)
@maxValue(146000)
param retentionDays int = 2192

@description('Lock the retention policy (irreversible): it can then only be extended, never shortened or removed, by anyone. An account is created Unlocked; lock it on a later deployment.')
param lockRetentionPolicy bool = false

@description('Days a deleted evidence blob or container stays recoverable, once its retention has run out (before that, nothing can be deleted at all).')
@minValue(1)
@maxValue(365)
param softDeleteDays int = 30

@description('The container holding the logs (dsr_export.adapters.evidence_log.EVIDENCE_CONTAINER).')
param containerName string = 'dsr-evidence'

@description('Redundancy. Standard_LRS keeps three copies in one datacenter; ZRS (three zones) or GRS/GZRS (a second region) where the region offers them and policy allows a second region. LRS to GRS can be changed by redeploying; to ZRS it takes a conversion.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

@description('Close the public endpoint: the app reaches the blob service through a private endpoint (network.bicep) and nothing else reaches the account.')
param networkIsolation bool = false

@description('Log Analytics workspace that receives the blob service\'s read, write and delete log.')
param logAnalyticsWorkspaceId string

@description('Resource id of the custom role "DSR evidence appender" (evidence-role.bicep): read and append, nothing else. Created at the start of the deployment, assigned here minutes later, so the definition has replicated when the assignment names it.')
param appenderRoleId string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  // StorageV2 standard: the logs are append blobs, which premium block-blob accounts refuse.
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    // No account key can be used: the app signs in with its managed identity, and whoever
    // holds a key (an Owner can list them) could not replay it against the logs.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    // Nothing outside the app writes here (unlike the export account, which Graph writes to),
    // so networkIsolation closes the public endpoint entirely.
    publicNetworkAccess: networkIsolation ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: networkIsolation ? 'Deny' : 'Allow'
      bypass: networkIsolation ? 'None' : 'AzureServices'
    }
    accessTier: 'Hot'
    // Version-level immutability for the whole account (it can only be enabled when the
    // account is created, and never disabled), with a default time-based retention policy
    // that every new blob version inherits. Protected append writes: Append Block still adds
    // to a protected append blob, and what is already written cannot change.
    // state: created Unlocked (a policy cannot be created Locked); Locked only on a later
    // deployment (lockRetentionPolicy=true), and a Locked policy can never be unlocked.
    immutableStorageWithVersioning: {
      enabled: true
      immutabilityPolicy: {
        immutabilityPeriodSinceCreationInDays: retentionDays
        state: lockRetentionPolicy ? 'Locked' : 'Unlocked'
        allowProtectedAppendWrites: true
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    // Version-level immutability needs versioning (and keeps it on).
    isVersioningEnabled: true
    // Once a log's retention has run out it can be deleted; a mistaken delete (a person, a
    // script) can then still be undone for softDeleteDays. No permanent delete of soft-deleted
    // data.
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
      allowPermanentDelete: false
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

// Created here, so the app needs no right to create containers (the role above has none).
resource evidenceContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
    // Version-level immutability for this container (the account's default policy applies).
    immutableStorageWithVersioning: {
      enabled: true
    }
    metadata: {
      purpose: 'dsr-evidence'
    }
  }
}

// Who read, appended to or tried to delete a log, and how they authenticated (the app's
// identity, a person's, a denied key): every request to the blob service.
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

// Why: the app appends each DSR's events to its log and reads the log back (to chain the next
// record, and for GET /api/exports/{requestId}/evidence). Scope: the evidence container only.
// The role is evidence-role.bicep's custom role (read and append only, see there).
resource evidenceAppender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(evidenceContainer.id, appPrincipalId, appenderRoleId)
  scope: evidenceContainer
  properties: {
    roleDefinitionId: appenderRoleId
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output containerName string = evidenceContainer.name
