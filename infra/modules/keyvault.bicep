// Key Vault for the two secrets the app cannot do without: the callback signing secret and,
// in stored-policy mode, the export account key (written by export-storage.bicep); and for the
// EC P-256 key that signs the receipts of the subjects' packages (docs/delivery.md).
// RBAC authorization (no access policies), so every grant is an auditable role assignment.

@description('Key Vault name (3-24 characters).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Principal (object) id of the app identity.')
param appPrincipalId string

@description('Standard Webhooks secret (whsec_...) that signs ticket callbacks.')
@secure()
param callbackSigningSecret string

@description('Secret name for the callback signing secret.')
param callbackSecretName string = 'callback-signing-secret'

@description('Name of the EC P-256 key that signs package receipts (ES256).')
param receiptKeyName string = 'receipt-signing'

@description('Resource id of the DSR receipt signer role (receipt-signer-role.bicep): read and sign on keys, nothing else.')
param receiptSignerRoleId string

@description('Months before Key Vault rotates the receipt key by itself (a new version; the old one stays published in the JWKS for as long as the evidence is kept, and keeps verifying the receipts it signed).')
@minValue(1)
@maxValue(24)
param receiptKeyRotationMonths int = 12

@description('Names of secrets in this vault that sign tenants\' callbacks (tenancy=multi, the registry\'s callbackSecretRef); the app identity may read each of them. Stored by an operator, not by the deployment: each must exist when the deployment runs.')
param tenantCallbackSecretNames array = []

@description('Purge protection: a deleted vault or secret cannot be purged before the soft-delete period ends, by anyone. On by default; it also means a deleted vault keeps its name for that period and azd down --purge cannot purge it. Irreversible once on.')
param purgeProtection bool = true

@description('Close the public endpoint: the vault is reached through its private endpoint only (network.bicep). App Service resolves the Key Vault references through the app\'s VNet integration then.')
param networkIsolation bool = false

@description('Log Analytics workspace that receives the vault\'s audit log (every secret read, write and delete, and every denied attempt).')
param logAnalyticsWorkspaceId string

// Key Vault Secrets User (built-in role, id verified against the Azure built-in roles list).
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    // Azure RBAC instead of access policies: grants are role assignments with a scope,
    // visible in one place, and the app gets read access to named secrets only.
    enableRbacAuthorization: true
    // A deleted secret or vault can be recovered.
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // ARM refuses an explicit false once enabled, so the property is omitted when off.
    enablePurgeProtection: purgeProtection ? true : null
    // The vault is not used by VMs, disk encryption or ARM template parameter references.
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    // Without VNet integration App Service resolves Key Vault references from shared platform
    // addresses, so the public endpoint must stay open (authorization is by role, per secret):
    // an accepted risk, docs/security.md. networkIsolation=true closes it; the app then reads
    // through the private endpoint. Secrets written by a deployment go through Azure Resource
    // Manager, not the data plane, so `azd provision` still works with the endpoint closed.
    publicNetworkAccess: networkIsolation ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: networkIsolation ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource callbackSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: callbackSecretName
  properties: {
    value: callbackSigningSecret
    contentType: 'Standard Webhooks signing secret (whsec_...)'
  }
}

// Why Key Vault Secrets User: App Service resolves the CALLBACK_SIGNING_SECRET Key Vault
// reference with the app identity (keyVaultReferenceIdentity). Scope: this one secret, not
// the vault, so the identity reads nothing else stored here.
resource callbackSecretUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(callbackSecret.id, appPrincipalId, keyVaultSecretsUserRoleId)
  scope: callbackSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The tenants' callback signing secrets (tenancy=multi): stored by an operator when a tenant
// gets a secret of its own (its registry entry's callbackSecretRef), not by the deployment.
resource tenantCallbackSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = [
  for secretName in tenantCallbackSecretNames: {
    parent: vault
    name: secretName
  }
]

// Why Key Vault Secrets User: the callback activity reads the secret of the DSR's tenant
// (callbackSecretRef) with the app identity, at run time (callback_secrets.py). Scope: each
// named secret, not the vault: the identity reads no other tenant's secret that is not listed,
// and nothing else stored here (the vault scope would reach every secret added later).
resource tenantCallbackSecretUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (secretName, i) in tenantCallbackSecretNames: {
    name: guid(tenantCallbackSecret[i].id, appPrincipalId, keyVaultSecretsUserRoleId)
    scope: tenantCallbackSecret[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

// The receipt key: EC P-256 (ES256), usable only to sign and verify, never exportable. Created
// once; a later deployment does not add a version (ARM creates a key only if it is absent), so
// rotation is Key Vault's own policy below or an operator's `az keyvault key rotate`. Every
// version expires two rotation periods after its creation, so a version stops signing on its
// own even if rotation were switched off; an expired version still publishes its public key,
// so the receipts it signed keep verifying.
resource receiptKey 'Microsoft.KeyVault/vaults/keys@2023-07-01' = {
  parent: vault
  name: receiptKeyName
  properties: {
    kty: 'EC'
    curveName: 'P-256'
    keyOps: [
      'sign'
      'verify'
    ]
    attributes: {
      enabled: true
      exportable: false
    }
    rotationPolicy: {
      attributes: {
        expiryTime: 'P${receiptKeyRotationMonths * 2}M'
      }
      lifetimeActions: [
        {
          trigger: {
            timeAfterCreate: 'P${receiptKeyRotationMonths}M'
          }
          action: {
            type: 'rotate'
          }
        }
        {
          trigger: {
            timeBeforeExpiry: 'P30D'
          }
          action: {
            type: 'notify'
          }
        }
      ]
    }
  }
}

// Why: the app signs each package's receipt with the key (CryptographyClient.sign) and serves
// the public keys of its versions at /api/.well-known/jwks.json. The role: read and sign only
// (receipt-signer-role.bicep, created first in the deployment). Scope: this one key.
resource receiptKeySigner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(receiptKey.id, appPrincipalId, receiptSignerRoleId)
  scope: receiptKey
  properties: {
    roleDefinitionId: receiptSignerRoleId
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Key Vault's audit log (AuditEvent): who read, wrote or deleted which secret, when and from
// where, including refused attempts. It is the only record of who read the export account
// key or the callback signing secret.
resource auditLog 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}

output name string = vault.name
output id string = vault.id
output vaultUri string = vault.properties.vaultUri
// Versionless URI: rotating the secret (new version) needs no redeployment.
output callbackSecretUri string = callbackSecret.properties.secretUri
// Versionless key id (https://<vault>.vault.azure.net/keys/<name>): the current version signs.
output receiptKeyUri string = receiptKey.properties.keyUri
