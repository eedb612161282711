// The custom role the app's identity holds on the receipt key (keyvault.bicep assigns it):
// read the key (its public part and its versions, for the JWKS) and sign with it, nothing else.
//
// A module of its own, like evidence-role.bicep, so that main.bicep creates the definition at
// the very start of a deployment while the assignment comes minutes later (keyvault.bicep
// waits for the Log Analytics workspace): a custom role created and assigned at once can fail
// while the definition replicates ("RoleDefinitionDoesNotExist"; docs/deploy.md, "What Azure
// can refuse and why").

@description('Name of the Key Vault the role is for (keyvault.bicep).')
param vaultName string

// Read and sign, nothing else. A custom role because no built-in one fits: Key Vault Crypto
// User also decrypts, unwraps, wraps, encrypts and updates keys. Assignable only in this
// resource group; the one assignment (keyvault.bicep) is narrower still: the receipt key.
resource receiptSignerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceId('Microsoft.KeyVault/vaults', vaultName), 'dsr-receipt-signer')
  properties: {
    roleName: 'DSR receipt signer (${vaultName})'
    description: 'Read the public part and versions of the DSR receipt key in ${vaultName}, and sign with it; no decrypt, unwrap, update, create, rotate or delete.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.KeyVault/vaults/keys/read'
          'Microsoft.KeyVault/vaults/keys/sign/action'
        ]
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

output id string = receiptSignerRole.id
