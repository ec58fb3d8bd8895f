// The function app on the Flex Consumption plan. It runs as the user-assigned managed identity
// only (no system-assigned identity, no storage keys, no instrumentation key): host storage,
// telemetry, Key Vault references and the code's own Azure calls all authenticate as that identity.

@description('Name of the function app (also the first label of its default host name).')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region of the plan and the app.')
param location string

@description('Tags applied to the plan and the app. The app also gets azd-service-name so `azd deploy` finds it.')
param tags object = {}

@description('Name of the service in azure.yaml that deploys to this app.')
param serviceName string = 'api'

@description('Resource id of the user-assigned managed identity the app runs as.')
param identityId string

@description('Client id of that identity (AzureWebJobsStorage__clientId, APPLICATIONINSIGHTS_AUTHENTICATION_STRING).')
param identityClientId string

@description('Blob endpoint of the host storage account.')
param storageBlobEndpoint string

@description('Queue endpoint of the host storage account.')
param storageQueueEndpoint string

@description('Table endpoint of the host storage account.')
param storageTableEndpoint string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Application Insights connection string.')
param applicationInsightsConnectionString string

@description('Settings the application code reads (see onboarding/settings.py). Secret ones must be Key Vault references.')
param appSettings object

@description('Public https base URL admins reach the app at (a custom domain or Front Door). Empty: the app\'s default host name.')
param publicBaseUrl string = ''

@description('Endpoint of the Durable Task Scheduler the app uses as its Durable backend. Empty: the Azure Storage backend (host storage), as host.json configures it.')
param durableTaskSchedulerEndpoint string = ''

@description('Python version of the Flex Consumption runtime.')
@allowed([
  '3.11'
])
param pythonVersion string = '3.11'

@description('Upper bound on instances the plan scales out to. Graph and Exchange throttle per tenant, so more instances do not mean more throughput.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Work is durable (state lives in storage), so losing an instance or a zone delays an onboarding and does not lose it; Flex Consumption zone redundancy is regional and opt-in.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

// No App Service Authentication (Easy Auth): it would put an Entra sign-in in front of the consent
// callback and the emailed approval links, which carry their own signature (LINK_SIGNING_KEY), and
// an Easy Auth identity cannot satisfy a function-level trigger (azure-functions-host#11394). The
// API's triggers are anonymous at the host and the app checks a function key (API_FUNCTION_KEY) or
// an Entra access token with an app role itself (docs/security.md, "Requester API authentication").
resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: Callers are admins' browsers (consent callback, approval pages) and API clients holding a function key or an Entra token; mutual TLS would lock out the browsers.
  // checkov:skip=CKV_AZURE_222: Public network access is the product: admins follow emailed links from anywhere, and API clients call from their own networks. Put Front Door or API Management with a WAF in front if policy demands it.
  // checkov:skip=CKV_AZURE_213: The Flex Consumption scale controller starts and stops instances per demand; there is no standing worker pool for a health-check probe to evict instances from.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales per instance on demand; App Service zone redundancy / minimum worker count settings do not apply to this plan.
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    // Key Vault references resolve as the user-assigned identity; the default would be a
    // system-assigned identity, which this app deliberately does not have.
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// Basic-auth publishing (FTP and the SCM site's user/password) is off: azd deploys with an Entra
// token, and a publishing password would be one more long-lived secret.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

// Platform settings: identity-based host storage (one URI per service, because Durable Functions
// uses queues and tables as well as blobs) and Entra-authenticated telemetry.
var platformSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
  AzureWebJobsStorage__tableServiceUri: storageTableEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

// The Durable backend. host.json configures the Azure Storage provider; with a Durable Task
// Scheduler, app settings override host.json's storageProvider (AzureFunctionsJobHost__ + the
// JSON path, '__' for each level: docs/deploy.md cites the rule) and name the connection setting.
// The scheduler accepts Entra tokens only: ClientID picks the user-assigned identity.
var schedulerSettings = {
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
  DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${durableTaskSchedulerEndpoint};Authentication=ManagedIdentity;ClientID=${identityClientId}'
}
var backendSettings = empty(durableTaskSchedulerEndpoint) ? {} : schedulerSettings

// Settings the code reads that depend on the site itself.
var siteSettings = {
  PUBLIC_BASE_URL: empty(publicBaseUrl) ? 'https://${site.properties.defaultHostName}' : publicBaseUrl
}

// A separate child resource (not siteConfig.appSettings) so that the app's own host name can
// appear in PUBLIC_BASE_URL without a dependency cycle.
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov applies its siteConfig ('web') checks to every sites/config resource; this one is
  // 'appsettings' and holds application settings only, so these checks do not apply to it.
  // checkov:skip=CKV_AZURE_13: Not the 'web' config (see above); why there is no App Service Authentication is explained on the site resource.
  // checkov:skip=CKV_AZURE_63: Not the 'web' config (see above); HTTP logging is an App Service (IIS) feature, function logs go to Application Insights.
  // checkov:skip=CKV_AZURE_65: Not the 'web' config (see above); detailed error pages are an App Service (IIS) feature.
  // checkov:skip=CKV_AZURE_66: Not the 'web' config (see above); failed request tracing is an App Service (IIS) feature.
  // checkov:skip=CKV_AZURE_80: Not the 'web' config (see above); the app is Python, no .NET Framework.
  // checkov:skip=CKV_AZURE_88: Not the 'web' config (see above); Flex Consumption apps have no Azure Files content share.
  // checkov:skip=CKV_AZURE_222: Not the 'web' config (see above); public access is discussed on the site resource.
  parent: site
  name: 'appsettings'
  properties: union(platformSettings, backendSettings, appSettings, siteSettings)
}

@description('Name of the function app.')
output name string = site.name

@description('Default host name of the function app.')
output defaultHostName string = site.properties.defaultHostName

@description('Base URL the app is reached at (PUBLIC_BASE_URL).')
output publicBaseUrl string = siteSettings.PUBLIC_BASE_URL
