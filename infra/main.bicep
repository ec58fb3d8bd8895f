// Mailbox OAuth onboarding: a Durable Functions app (Python, Flex Consumption) that registers Entra
// ID apps for IMAP/POP app-only access to Exchange Online. Deployed with `azd up`; see
// docs/deploy.md for the one-time admin steps this template cannot do for you.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; it seeds a short unique token used in every resource name.')
param environmentName string

@minLength(1)
@description('Azure region of every resource. It must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Name of the resource group. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

@minLength(3)
@description('Mailbox (UPN or primary SMTP address) that sends consent and approval emails (MAIL_SENDER). The identity may send as this mailbox only: see mailSendScoping.')
param mailSender string

@description('Cloud preset of the tenant\'s Microsoft 365 endpoints (AZURE_CLOUD, see onboarding/clouds.json). Empty: the cloud this deployment runs in. Set it when they differ: a GCC (moderate) tenant uses AzurePublicCloud endpoints, a DoD tenant AzureUSGovernmentDoD (its Azure cloud is AzureUSGovernment, whose preset is GCC High\'s).')
@allowed([
  ''
  'AzurePublicCloud'
  'AzureUSGovernment'
  'AzureUSGovernmentDoD'
  'AzureChinaCloud'
])
param azureCloud string = ''

@description('Allow the "grant" consent mode, in which the workflow assigns IMAP/POP app roles itself after an admin approves. Grants the identity AppRoleAssignment.ReadWrite.All (a tenant-wide privilege) and Application.Read.All, which assigning an app role needs; leave false if admins always consent in Entra ("consent" mode).')
param enableGrantMode bool = false

@description('Let onboarding requests name the mail product\'s principal (mailProductPrincipalId), which then gets Key Vault Secrets User on its one secret. Gives the identity Role Based Access Control Administrator on the vault, constrained to assigning Key Vault Secrets User to service principals (docs/security.md).')
param mailProductAccess bool = true

@description('Client id of the app registration tenant admins sign in with before deciding (OpenID Connect, single tenant, web redirect URI <base URL>/api/signin/callback, optional claims: groupMembershipClaims DirectoryRole; see docs/deploy.md). Empty: no approval or consent confirmation can be made.')
param signinClientId string = ''

@description('Object id of a security group whose members alone may approve (on top of holding an approver role). Empty: any approver-role holder.')
param approverGroupId string = ''

@description('How the identity\'s permission to send mail is limited to mailSender. rbacForApplications: no Mail.Send in Entra; an Exchange admin assigns the "Application Mail.Send" role scoped to the mailbox (recommended). applicationAccessPolicy: Mail.Send is granted in Entra (tenant-wide until the admin adds an application access policy).')
@allowed([
  'rbacForApplications'
  'applicationAccessPolicy'
])
param mailSendScoping string = 'rbacForApplications'

@description('Declare the identity\'s Microsoft Graph and Exchange Online application permissions in this deployment (Microsoft Graph Bicep extension). Needs a deployer with Privileged Role Administrator or Global Administrator. false: scripts/azd/grant-directory-permissions.sh grants them, run by such an admin.')
param grantDirectoryPermissions bool = true

@description('Public https base URL admins reach the app at, if not its default host name (custom domain, Front Door).')
param publicBaseUrl string = ''

@description('Comma-separated domains admin addresses may use (ADMIN_EMAIL_DOMAINS). Empty: the tenant\'s verified domains, read from Microsoft Graph with Domain.Read.All.')
param adminEmailDomains string = ''

@description('Organisation named as the sender in every email (BRAND_ORGANIZATION_NAME).')
param brandOrganizationName string = 'Mail onboarding'

@description('https URL of the logo shown in emails and pages (BRAND_LOGO_URL). Empty: no logo.')
param brandLogoUrl string = ''

@description('Who admins contact with questions: an email address or https URL (BRAND_SUPPORT_CONTACT).')
param brandSupportContact string = ''

@description('True when the link-signing key already exists in the vault (set by the preprovision hook); then it is left untouched.')
param linkSigningKeyExists bool = false

// Two fresh GUIDs (244 random bits) make a new link-signing key; used only on the first deployment.
// checkov reads no inline suppressions on Bicep parameters; tests/infra applies these two itself.
// checkov:skip=CKV_AZURE_131: newGuid() is a fresh random value on every deployment, not a hardcoded one; Bicep's own rule secure-parameter-default (an error in bicepconfig.json) accepts it, and a parameter default is the only place Bicep allows newGuid().
@secure()
@description('Random seed for a new link-signing key. Leave the default.')
param linkSigningKeySeedA string = newGuid()

// checkov:skip=CKV_AZURE_131: newGuid() is a fresh random value on every deployment, not a hardcoded one.
@secure()
@description('Second random seed for a new link-signing key. Leave the default.')
param linkSigningKeySeedB string = newGuid()

@minLength(3)
@description('Address the alert rules\' action group emails (ALERT_EMAIL): an operators\' mailbox or distribution list. docs/operations.md says what each alert means.')
param alertEmail string

@description('Durable Functions backend. azureStorage: queues, tables and blobs in the host storage account (host.json). durableTaskScheduler: a managed Durable Task Scheduler and task hub. Choose once: a backend cannot be changed later without losing the instances in flight (docs/deploy.md).')
@allowed([
  'azureStorage'
  'durableTaskScheduler'
])
param durableBackend string = 'azureStorage'

@description('Billing SKU of the Durable Task Scheduler, when durableBackend is durableTaskScheduler.')
@allowed([
  'Consumption'
  'Dedicated'
])
param durableTaskSchedulerSku string = 'Consumption'

@description('True when the API function key already exists in the vault (set by the preprovision hook); then it is left untouched.')
param apiFunctionKeyExists bool = false

// checkov:skip=CKV_AZURE_131: newGuid() is a fresh random value on every deployment, not a hardcoded one; a parameter default is the only place Bicep allows newGuid().
@secure()
@description('Random seed for a new API function key. Leave the default.')
param apiFunctionKeySeedA string = newGuid()

// checkov:skip=CKV_AZURE_131: newGuid() is a fresh random value on every deployment, not a hardcoded one.
@secure()
@description('Second random seed for a new API function key. Leave the default.')
param apiFunctionKeySeedB string = newGuid()

@description('Application ID URI of the API\'s app registration (API_APP_ID_URI), e.g. api://<client id>. Empty together with apiClientId: Entra access tokens are not accepted, function keys only (docs/deploy.md, "The API\'s app registration").')
param apiAppIdUri string = ''

@description('Client (application) id of the API\'s app registration (API_CLIENT_ID): v2.0 access tokens carry it as their audience.')
param apiClientId string = ''

@description('Access token version the API\'s app registration requests (its manifest\'s requestedAccessTokenVersion; null there means 1).')
@allowed([
  '1'
  '2'
])
param apiAccessVersion string = '2'

@description('Days a deleted Key Vault stays recoverable; purge protection keeps it for this long whatever happens.')
@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteRetentionInDays int = 90

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

// Endpoint host names live in one file shared with the code.
var clouds = loadJsonContent('../onboarding/clouds.json')
var cloudName = !empty(azureCloud) ? azureCloud : ((environment().name == 'AzureCloud') ? 'AzurePublicCloud' : environment().name)
var cloud = clouds[cloudName]

var linkSigningKeySecretName = 'link-signing-key'
// Created by an admin with the sign-in app registration's client secret (docs/deploy.md); until then
// the reference does not resolve and the app refuses every decision.
var signinClientSecretName = 'signin-client-secret'

// host.json is the one source of the task hub's name; the scheduler's task hub takes the same.
var durableTaskHubName = loadJsonContent('../host.json').extensions.durableTask.hubName
var useScheduler = durableBackend == 'durableTaskScheduler'

var apiFunctionKeySecretName = 'api-function-key'

// Least privilege per feature: creating and managing the apps it owns; assigning app roles only
// when grant mode is on; Mail.Send in Entra only when an application access policy will scope it.
var baseGraphAppRoles = ['Application.ReadWrite.OwnedBy']
// Assigning an app role is documented with AppRoleAssignment.ReadWrite.All and Application.Read.All.
var grantModeAppRoles = enableGrantMode ? ['AppRoleAssignment.ReadWrite.All', 'Application.Read.All'] : []
// Admin addresses must be in the tenant's verified domains, read with Domain.Read.All, unless
// adminEmailDomains lists the domains: the sender mailbox never mails outside on a requester's say.
var domainAppRoles = empty(adminEmailDomains) ? ['Domain.Read.All'] : []
var mailAppRoles = (mailSendScoping == 'applicationAccessPolicy') ? ['Mail.Send'] : []
var graphAppRoles = concat(baseGraphAppRoles, domainAppRoles, grantModeAppRoles, mailAppRoles)
var exchangeAppRoles = ['Exchange.ManageAsApp']

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-func-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: 'deployment-package'
    principalId: identity.outputs.principalId
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
    mailProductAccess: mailProductAccess
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionInDays
    linkSigningKeySecretName: linkSigningKeySecretName
    linkSigningKeyExists: linkSigningKeyExists
    linkSigningKey: '${replace(linkSigningKeySeedA, '-', '')}${replace(linkSigningKeySeedB, '-', '')}'
    apiFunctionKeySecretName: apiFunctionKeySecretName
    apiFunctionKeyExists: apiFunctionKeyExists
    apiFunctionKey: '${replace(apiFunctionKeySeedA, '-', '')}${replace(apiFunctionKeySeedB, '-', '')}'
  }
}

var signinClientSecretUri = '${keyVault.outputs.uri}secrets/${signinClientSecretName}/'
// The key before the last rotation, kept for the longest link lifetime (docs/operations.md). No
// deployment writes it; while the secret does not exist the reference stays unresolved and the app
// accepts no previous key.
var linkSigningKeyPreviousSecretUri = '${keyVault.outputs.uri}secrets/${linkSigningKeySecretName}-previous/'

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: resourceToken
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    alertEmail: alertEmail
  }
}

module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    displayName: 'Mailbox onboarding (${environmentName})'
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

module durableTask 'app/durabletask.bicep' = if (useScheduler) {
  name: 'durabletask'
  scope: rg
  params: {
    name: 'dts-${resourceToken}'
    location: location
    tags: tags
    taskHubName: durableTaskHubName
    principalId: identity.outputs.principalId
    skuName: durableTaskSchedulerSku
  }
}

// Every setting onboarding/settings.py reads (SETTINGS), except PUBLIC_BASE_URL, which needs the
// site's host name and is set in app/function.bicep. tests/infra checks the two lists agree.
var appSettings = {
  TENANT_ID: tenant().tenantId
  AZURE_CLOUD: cloudName
  AZURE_CLIENT_ID: identity.outputs.clientId
  ENTRA_AUTHORITY_HOST: cloud.ENTRA_AUTHORITY_HOST
  ENTRA_DISABLE_INSTANCE_DISCOVERY: 'false'
  ENTRA_TOKEN_ISSUER_V1_HOST: cloud.ENTRA_TOKEN_ISSUER_V1_HOST
  GRAPH_ENDPOINT: cloud.GRAPH_ENDPOINT
  EXCHANGE_ENDPOINT: cloud.EXCHANGE_ENDPOINT
  IMAP_HOST: cloud.IMAP_HOST
  IMAP_PORT: '993'
  POP_HOST: cloud.POP_HOST
  POP_PORT: '995'
  KEY_VAULT_URI: keyVault.outputs.uri
  KEY_VAULT_RESOURCE_ID: keyVault.outputs.resourceId
  // The vault's cloud, which is the deployment's: not the Microsoft 365 preset (a GCC tenant may use
  // public endpoints from an Azure Government subscription). Same hosts as the presets' defaults.
  RESOURCE_MANAGER_ENDPOINT: environment().resourceManager
  MAIL_SENDER: mailSender
  LINK_SIGNING_KEY: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.linkSigningKeySecretUri})'
  LINK_SIGNING_KEY_PREVIOUS: '@Microsoft.KeyVault(SecretUri=${linkSigningKeyPreviousSecretUri})'
  // The requester's API: a key the app checks itself, and Entra tokens for the API's app registration.
  API_FUNCTION_KEY: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.apiFunctionKeySecretUri})'
  API_APP_ID_URI: apiAppIdUri
  API_CLIENT_ID: apiClientId
  API_ACCESS_TOKEN_VERSION: apiAccessVersion
  MAILBOX_BATCH_SIZE: '200'
  MAILBOX_FANOUT: '10'
  MAILBOX_GRANTS_AT_ONCE: '2'
  MAILBOX_CONCURRENCY: '10'
  EXCHANGE_CALLS: 'batch'
  CONSENT_DEADLINE_HOURS: '120'
  CONSENT_REMINDER_HOURS: '24'
  VERIFY_WINDOW_MINUTES: '120'
  POLL_INITIAL_SECONDS: '10'
  POLL_MAX_SECONDS: '600'
  ACTIVITY_RETRY_SECONDS: '15'
  CREDENTIAL_EXPIRY_WARNING_DAYS: '30'
  HISTORY_RETENTION_DAYS: '90'
  ROTATION_OVERLAP_HOURS: '24'
  ROTATE_DAYS_BEFORE_EXPIRY: '0'
  CALLBACK_ALLOW_PRIVATE_NETWORKS: 'false'
  ENABLE_GRANT_MODE: enableGrantMode ? 'true' : 'false'
  SIGNIN_CLIENT_ID: signinClientId
  SIGNIN_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${signinClientSecretUri})'
  APPROVER_GROUP_ID: approverGroupId
  ADMIN_EMAIL_DOMAINS: adminEmailDomains
  ONBOARDINGS_PER_REQUESTER_PER_HOUR: '10'
  ONBOARDINGS_PER_HOUR: '50'
  EMAILS_PER_HOUR: '200'
  BRAND_ORGANIZATION_NAME: brandOrganizationName
  BRAND_LOGO_URL: brandLogoUrl
  BRAND_SUPPORT_CONTACT: brandSupportContact
  // With host.json's telemetryMode OpenTelemetry: the worker exports its own logs, so their structured
  // fields (onboarding_id, step) become customDimensions (onboarding/telemetry.py).
  PYTHON_ENABLE_OPENTELEMETRY: 'true'
}

module function 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: 'func-${resourceToken}'
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    serviceName: 'api'
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    appSettings: appSettings
    publicBaseUrl: publicBaseUrl
    durableTaskSchedulerEndpoint: useScheduler ? durableTask.outputs.endpoint : ''
  }
}

// Declared after the function app on purpose: Entra ID replicates a new identity's service
// principal with a delay, and an app role assignment to a principal that a Graph replica does not
// know yet fails ("Not a valid reference update", msgraph-bicep-types#193). Going last gives
// replication the minutes the other resources take.
module directoryPermissions 'app/directory-permissions.bicep' = if (grantDirectoryPermissions) {
  name: 'directory-permissions'
  scope: rg
  dependsOn: [
    function
  ]
  params: {
    principalId: identity.outputs.principalId
    graphAppRoles: graphAppRoles
    exchangeAppRoles: exchangeAppRoles
  }
}

// Outputs become azd environment values, read by the hooks in scripts/azd and by docs/deploy.md.
@description('Region of the deployment.')
output AZURE_LOCATION string = location

@description('Tenant the app onboards into (TENANT_ID).')
output AZURE_TENANT_ID string = tenant().tenantId

@description('Resource group holding everything.')
output AZURE_RESOURCE_GROUP string = rg.name

@description('Name of the function app.')
output AZURE_FUNCTION_APP_NAME string = function.outputs.name

@description('Base URL of the app: POST {FUNCTION_BASE_URL}/api/onboardings.')
output FUNCTION_BASE_URL string = function.outputs.publicBaseUrl

@description('Name of the Key Vault holding client secrets and the link-signing key.')
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name

@description('URI of that Key Vault.')
output AZURE_KEY_VAULT_URI string = keyVault.outputs.uri

@description('Name of the secret holding the link-signing key.')
output LINK_SIGNING_KEY_SECRET_NAME string = linkSigningKeySecretName

@description('Name of the secret holding the API function key (callers send it as x-functions-key).')
output API_FUNCTION_KEY_SECRET_NAME string = apiFunctionKeySecretName

@description('Name of the managed identity the app runs as.')
output MANAGED_IDENTITY_NAME string = identity.outputs.name

@description('Client id of the managed identity (its appId in Entra and Exchange).')
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId

@description('Object id of the managed identity\'s service principal.')
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId

@description('Microsoft Graph application permissions the identity needs, comma-separated.')
output GRAPH_APP_ROLES string = join(graphAppRoles, ',')

@description('Office 365 Exchange Online application permissions the identity needs, comma-separated.')
output EXCHANGE_APP_ROLES string = join(exchangeAppRoles, ',')

@description('Whether this deployment declared those permissions itself (else the hook grants them).')
output DIRECTORY_PERMISSIONS_DECLARED bool = grantDirectoryPermissions

@description('Sender mailbox, for the Mail.Send scoping step.')
output MAIL_SENDER string = mailSender

@description('How Mail.Send is scoped to the sender mailbox.')
output MAIL_SEND_SCOPING string = mailSendScoping

@description('Cloud preset in use (AZURE_CLOUD).')
output AZURE_CLOUD_PRESET string = cloudName

@description('Durable Functions backend in use (azureStorage or durableTaskScheduler).')
output DURABLE_BACKEND string = durableBackend

@description('Name of the Durable Task Scheduler (empty with the Azure Storage backend); its dashboard opens from this resource in the portal.')
output DURABLE_TASK_SCHEDULER_NAME string = useScheduler ? durableTask.outputs.name : ''
