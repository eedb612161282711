// The custom role the app's identity holds on the evidence container (evidence-storage.bicep
// assigns it): read and append, nothing else.
//
// A module of its own so that main.bicep creates the definition at the very start of a
// deployment, while the assignment comes minutes later (evidence-storage.bicep waits for the
// Log Analytics workspace and its own account): a custom role created and assigned at once can
// fail while the definition replicates ("RoleDefinitionDoesNotExist"; docs/deploy.md, "What
// Azure can refuse and why"). Its name and id are those the definition had when
// evidence-storage.bicep held it (the same guid of the account's resource id), so an existing
// deployment keeps its role and assignment.

@description('Name of the evidence storage account the role is for (evidence-storage.bicep).')
param storageAccountName string

// What the app may do here, and nothing more (the custom role below):
//   containers/read          read the container's properties (an Action: a management and
//                            data-plane read of the container itself, not of its blobs)
//   blobs/read               read a log (to chain onto its last record, and to verify it)
//   blobs/add/action         create a new blob and Append Block; it cannot overwrite an
//                            existing blob (that takes blobs/write, not granted), delete
//                            (blobs/delete), or set an immutability policy or legal hold
//                            (blobs/immutableStorage/runAsSuperUser/action, containers/
//                            setLegalHold/action, containers/immutabilityPolicies/*).
var appenderActions = [
  'Microsoft.Storage/storageAccounts/blobServices/containers/read'
]
var appenderDataActions = [
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'
]

// Read and append, nothing else. A custom role because no built-in one fits: Storage Blob Data
// Contributor can delete and overwrite, Storage Blob Data Reader cannot append. Assignable only
// in this resource group (the narrowest scope Azure documents for custom roles); the one
// assignment (evidence-storage.bicep) is narrower still: the evidence container.
resource appenderRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceId('Microsoft.Storage/storageAccounts', storageAccountName), 'dsr-evidence-appender')
  properties: {
    roleName: 'DSR evidence appender (${storageAccountName})'
    description: 'Read and append to the DSR evidence logs in ${storageAccountName}; no overwrite, no delete, no immutability policy or legal hold.'
    type: 'CustomRole'
    permissions: [
      {
        actions: appenderActions
        notActions: []
        dataActions: appenderDataActions
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

output id string = appenderRole.id
