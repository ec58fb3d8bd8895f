// The Durable Task Scheduler backend (durableBackend = 'durableTaskScheduler' in main.bicep): a
// scheduler, one task hub, and the function app's identity as "Durable Task Data Contributor" on
// that task hub. docs/deploy.md compares it with the Azure Storage backend.
//
// Microsoft.DurableTask/schedulers and schedulers/taskHubs, API 2026-02-01
// (https://learn.microsoft.com/azure/templates/microsoft.durabletask/2026-02-01/schedulers,
// https://learn.microsoft.com/azure/templates/microsoft.durabletask/2026-02-01/schedulers/taskhubs).
// The role: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/integration#durable-task-data-contributor

@description('Name of the scheduler (3-64 letters, digits and hyphens).')
param name string

@description('Azure region of the scheduler; the same as the function app\'s keeps latency low.')
param location string

@description('Tags applied to the scheduler.')
param tags object = {}

@description('Name of the task hub: host.json\'s durableTask.hubName, so both backends name the hub alike.')
param taskHubName string

@description('Principal (object) id of the function app\'s managed identity.')
param principalId string

@description('Billing SKU of the scheduler. Consumption: pay per action. Dedicated: reserved capacity units, for steady high throughput.')
@allowed([
  'Consumption'
  'Dedicated'
])
param skuName string = 'Consumption'

@description('Capacity units of a Dedicated scheduler (ignored for Consumption).')
@minValue(1)
param dedicatedCapacity int = 1

@description('Addresses (IPv4, IPv6, CIDR) allowed to reach the scheduler\'s endpoint. An empty list denies all traffic; access is still only with an Entra token holding a Durable Task role.')
param ipAllowlist array = [
  '0.0.0.0/0'
  '::/0'
]

// Capacity units exist for the Dedicated SKU only.
var dedicatedSku = {
  capacity: dedicatedCapacity
}

var durableTaskDataContributor = '0ad04412-c4d5-4796-b79c-f76d14c8d402'

resource scheduler 'Microsoft.DurableTask/schedulers@2026-02-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    ipAllowlist: ipAllowlist
    sku: union({ name: skuName }, (skuName == 'Dedicated') ? dedicatedSku : {})
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2026-02-01' = {
  parent: scheduler
  name: taskHubName
}

// Scoped to the task hub, not the scheduler: the app needs this hub only.
resource dataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(taskHub.id, principalId, durableTaskDataContributor)
  scope: taskHub
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributor)
  }
}

@description('Endpoint of the scheduler (the Endpoint part of DURABLE_TASK_SCHEDULER_CONNECTION_STRING).')
output endpoint string = scheduler.properties.endpoint

@description('Name of the task hub.')
output taskHubName string = taskHub.name

@description('Name of the scheduler (its dashboard is reached from the portal page of this resource).')
output name string = scheduler.name
