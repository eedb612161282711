// durableBackend=durableTaskScheduler only: the managed Durable Task Scheduler as the task hub
// backend, in place of the tables, queues and blobs Durable Functions keeps in host storage
// otherwise. Host storage stays in both modes: the Functions host, the dsr-requests queue and
// the deployment package live there (host-storage.bicep).
//
//   scheduler      Dedicated (1 capacity unit) or Consumption; identity-only, no keys exist
//   taskHub        the app's task hub; its name is the app's hubName (function-app.bicep)
//   retention      how long a finished DSR's instance is kept: the SKU's maximum
//   role           Durable Task Data Contributor for the app identity, on the task hub only
//
// The choice between the backends and the two SKUs, and what retention means for a DSR, are in
// docs/architecture.md ("Task hub backend") and docs/deploy.md ("Choosing the task hub backend").

@description('Scheduler name (3-64 letters, digits and hyphens).')
@minLength(3)
@maxLength(64)
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Task hub name (3-64 letters, digits and hyphens). The app is pointed at it by an app setting.')
@minLength(3)
@maxLength(64)
param taskHubName string

@description('dedicated: 1 capacity unit (2,000 actions/s, finished instances kept up to 90 days). consumption: billed per action (500 actions/s, kept up to 30 days).')
@allowed([
  'dedicated'
  'consumption'
])
param sku string = 'dedicated'

@description('Principal (object) id of the app identity.')
param appPrincipalId string

@description('Close the public endpoint: the app reaches the scheduler through a private endpoint (network.bicep), and only the virtual network\'s addresses are on the allow list.')
param networkIsolation bool = false

@description('Address space of the virtual network (networkIsolation only): the allow list then names it alone.')
param privateAddressPrefix string = ''

var isDedicated = sku == 'dedicated'
// One capacity unit is far above this workload (docs/deploy.md); high availability takes three.
var dedicatedSku = {
  name: 'Dedicated'
  capacity: 1
}
var consumptionSku = {
  name: 'Consumption'
}

// Built-in role definition id (Azure built-in roles, Integration: Durable Task Data Contributor).
var durableTaskDataContributorRoleId = '0ad04412-c4d5-4796-b79c-f76d14c8d402'

// Days a finished (Completed, Failed, Canceled, Terminated) instance is kept before the
// scheduler purges it: the most each SKU allows. Running and continued-as-new instances are
// never purged.
var retentionDays = isDedicated ? 90 : 30

resource scheduler 'Microsoft.DurableTask/schedulers@2026-02-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    sku: isDedicated ? dedicatedSku : consumptionSku
    // Flex Consumption without VNet integration has no fixed outbound address, so the public
    // endpoint admits every IPv4 address, as host storage and Key Vault do by default
    // (docs/deploy.md, "Choosing the task hub backend"): every call still needs an Entra token
    // of an identity holding a Durable Task role on this task hub. networkIsolation=true closes
    // the public endpoint, and the allow list names the virtual network only. An empty list
    // would refuse everything.
    ipAllowlist: networkIsolation ? [privateAddressPrefix] : ['0.0.0.0/0']
    publicNetworkAccess: networkIsolation ? 'Disabled' : 'Enabled'
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2026-02-01' = {
  parent: scheduler
  name: taskHubName
}

// One policy for every purgeable state. Without it the scheduler's default applies (30 days).
resource retention 'Microsoft.DurableTask/schedulers/retentionPolicies@2026-02-01' = {
  parent: scheduler
  name: 'default'
  properties: {
    retentionPolicies: [
      {
        retentionPeriodInDays: retentionDays
      }
    ]
  }
}

// Why Data Contributor and not Durable Task Worker: the app is a worker (orchestrator and
// activities) and a client too: it starts instances, reads and lists them, and raises the
// cancel event on them (intake, status API, cancel); Worker covers processing only. Scope: this
// task hub, not the scheduler, so a second hub on the same scheduler would grant the app
// nothing.
resource dataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(taskHub.id, appPrincipalId, durableTaskDataContributorRoleId)
  scope: taskHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributorRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output id string = scheduler.id
output name string = scheduler.name
// https://<name>-<suffix>.<region>.durabletask.io: the Endpoint of the app's connection string.
output endpoint string = scheduler.properties.endpoint
output taskHubName string = taskHub.name
output dashboardUrl string = taskHub.properties.dashboardUrl
output retentionDays int = retentionDays
