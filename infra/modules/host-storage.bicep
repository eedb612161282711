// Host storage: the Functions host, the Durable Functions task hub (queues, tables, blobs),
// the dsr-requests intake queue and the Flex Consumption deployment package. Nothing in here
// is personal data at rest beyond what Durable Functions persists (orchestration inputs carry
// object ids and ticket references, never a SAS), so no key is ever needed: identity only.

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

@description('Blob container that holds the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Queue the ticketing intake writes DSR requests to (the queue trigger reads it).')
param requestQueueName string = 'dsr-requests'

@description('Close the public endpoint: the app reaches blob, queue and table through private endpoints (network.bicep) and nothing else reaches the account.')
param networkIsolation bool = false

// Built-in role definition ids (verified against the Azure built-in roles list):
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributorRoleId = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    // No account keys, no SAS signed with them: every caller (the host, Durable Functions,
    // the deployment) authenticates with Entra ID, so a leaked connection string is useless.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    // Transport: HTTPS only, TLS 1.2 minimum.
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    // Nothing in this account is ever meant to be anonymous.
    allowBlobPublicAccess: false
    // No cross-tenant object replication of task hub data.
    allowCrossTenantReplication: false
    // Flex Consumption without VNet integration reaches storage over its public endpoint, so
    // it stays open by default (an accepted risk, docs/security.md; every caller still needs
    // an Entra identity with a data role). networkIsolation=true closes it: the app uses the
    // private endpoints, and no network rule lets anything else in.
    publicNetworkAccess: networkIsolation ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: networkIsolation ? 'Deny' : 'Allow'
      bypass: networkIsolation ? 'None' : 'AzureServices'
    }
    accessTier: 'Hot'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// Flex Consumption runs the app from a package in this container; the platform reads it
// with the app identity (functionAppConfig.deployment.storage.authentication).
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// Created here so the intake can enqueue before the app has ever run. The host creates
// '<queue>-poison' itself after maxDequeueCount failures.
resource requestQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: requestQueueName
}

// Why Blob Data Owner and not Contributor: the Functions host needs it for its own blob
// use on AzureWebJobsStorage (host lock leases, keys, Durable large-message and lease blobs,
// the deployment package), as Microsoft documents for identity-based host storage.
// Scope: this account only; the task hub and the deployment container live in it.
resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Why: Durable Functions' control and work-item queues, and the dsr-requests queue trigger
// (read, delete, move to -poison). Account scope because the task hub creates its queues
// at run time under names we do not choose.
resource queueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, storageQueueDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Why: Durable Functions' History and Instances tables (created at run time by the task hub).
resource tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, storageTableDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deploymentContainerUrl string = '${storage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
output requestQueueName string = requestQueue.name
// Role assignment ids, so the function app can depend on the grants existing before it starts.
output roleAssignmentIds array = [
  blobDataOwner.id
  queueDataContributor.id
  tableDataContributor.id
]
