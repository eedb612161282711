// networkIsolation=true only: a virtual network for the function app's outbound traffic, and
// private endpoints, so that the app reaches host storage, the export account, the evidence
// account and Key Vault (and the Durable Task Scheduler, with durableBackend=durableTaskScheduler)
// on private addresses only, and host storage, the evidence account, Key Vault and the scheduler
// can close their public endpoints.
// The same layout as Microsoft's Flex Consumption azd quickstarts (VNET_ENABLED).
//
//   snet-app  delegated to Microsoft.App/environments (Flex Consumption VNet integration)
//   snet-pe   the private endpoints: host storage blob/queue/table, export blob, evidence
//             blob, Key Vault, and the scheduler when there is one
//
// Private DNS zones linked to the virtual network make the accounts' and the vault's usual
// host names resolve to the private endpoints from inside it (the app needs no other setting).
// The export account keeps its public endpoint all the same: Microsoft Graph writes the
// exports from its own service addresses, which are not published (docs/security.md, accepted
// risks).

@description('Virtual network name.')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Address space of the virtual network, at least a /23: the first /24 is the app subnet, the second holds the private endpoints.')
param addressPrefix string

@description('Resource id of the host storage account (AzureWebJobsStorage).')
param hostStorageId string

@description('Resource id of the export storage account.')
param exportStorageId string

@description('Resource id of the evidence storage account.')
param evidenceStorageId string

@description('Resource id of the Key Vault.')
param keyVaultId string

@description('Resource id of the Durable Task Scheduler; empty: there is none (durableBackend=azureStorage).')
param schedulerId string = ''

var appSubnetName = 'snet-app'
var privateEndpointSubnetName = 'snet-pe'

// privatelink.<service>.core.windows.net and privatelink.vaultcore.azure.net, spelled through
// environment() so that national clouds get their own suffixes.
var storageSuffix = environment().suffixes.storage
var zoneNames = {
  blob: 'privatelink.blob.${storageSuffix}'
  queue: 'privatelink.queue.${storageSuffix}'
  table: 'privatelink.table.${storageSuffix}'
  vault: 'privatelink${replace(environment().suffixes.keyvaultDns, 'vault', 'vaultcore')}'
  // The scheduler's endpoint is <name>-<suffix>.<region>.durabletask.io. The zone name is the
  // public cloud's; environment() has no suffix for it, so national clouds are not covered.
  scheduler: 'privatelink.durabletask.io'
}
var useScheduler = !empty(schedulerId)
var storageAndVaultZones = [
  'blob'
  'queue'
  'table'
  'vault'
]
var zones = concat(storageAndVaultZones, useScheduler ? ['scheduler'] : [])

// What each private endpoint connects to: the resource, its sub-resource (group id) and the
// DNS zone its address is registered in.
var storageAndVaultEndpoints = [
  {
    name: 'host-blob'
    target: hostStorageId
    groupId: 'blob'
  }
  {
    name: 'host-queue'
    target: hostStorageId
    groupId: 'queue'
  }
  {
    name: 'host-table'
    target: hostStorageId
    groupId: 'table'
  }
  {
    name: 'export-blob'
    target: exportStorageId
    groupId: 'blob'
  }
  {
    name: 'evidence-blob'
    target: evidenceStorageId
    groupId: 'blob'
  }
  {
    name: 'vault'
    target: keyVaultId
    groupId: 'vault'
  }
]
// The scheduler's private link sub-resource is 'scheduler'.
var schedulerEndpoint = {
  name: 'scheduler'
  target: schedulerId
  groupId: 'scheduler'
}
var endpoints = concat(storageAndVaultEndpoints, useScheduler ? [schedulerEndpoint] : [])

// Inbound: nothing but the platform's own defaults; the app subnet only sends, and the
// private endpoints answer the virtual network.
resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-${name}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: appSubnetName
        properties: {
          addressPrefix: cidrSubnet(addressPrefix, 24, 0)
          networkSecurityGroup: {
            id: nsg.id
          }
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                // The delegation Flex Consumption VNet integration requires.
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: cidrSubnet(addressPrefix, 24, 1)
          networkSecurityGroup: {
            id: nsg.id
          }
          privateEndpointNetworkPolicies: 'Enabled'
        }
      }
    ]
  }
}

resource zone 'Microsoft.Network/privateDnsZones@2024-06-01' = [
  for key in zones: {
    name: zoneNames[key]
    location: 'global'
    tags: tags
  }
]

resource zoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [
  for (key, i) in zones: {
    parent: zone[i]
    name: 'link-${name}'
    location: 'global'
    tags: tags
    properties: {
      registrationEnabled: false
      virtualNetwork: {
        id: vnet.id
      }
    }
  }
]

resource endpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = [
  for item in endpoints: {
    name: 'pe-${item.name}-${name}'
    location: location
    tags: tags
    properties: {
      subnet: {
        id: resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, privateEndpointSubnetName)
      }
      privateLinkServiceConnections: [
        {
          name: item.name
          properties: {
            privateLinkServiceId: item.target
            groupIds: [
              item.groupId
            ]
          }
        }
      ]
    }
  }
]

// Registers each endpoint's address in its zone (A record under the resource's name).
resource endpointDns 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [
  for (item, i) in endpoints: {
    parent: endpoint[i]
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [
        {
          name: item.groupId
          properties: {
            privateDnsZoneId: zone[indexOf(zones, item.groupId)].id
          }
        }
      ]
    }
    // The zone must be linked before the first lookup from the app.
    dependsOn: [
      zoneLink
    ]
  }
]

output vnetId string = vnet.id
output appSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, appSubnetName)
output privateEndpointIds array = [for (item, i) in endpoints: endpoint[i].id]
