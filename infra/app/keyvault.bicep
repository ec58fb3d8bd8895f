// The vault that receives the client secrets of the apps this service registers, and holds the
// service's own link-signing key. RBAC authorisation only (no access policies), soft delete with
// purge protection, and a single data-plane role for the app's identity; optionally the right to give
// a mail product Key Vault Secrets User on one secret, and nothing else.

@description('Name of the Key Vault (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region of the vault.')
param location string

@description('Tags applied to the vault.')
param tags object = {}

@description('Principal (object) id of the function app\'s managed identity. It gets Key Vault Secrets Officer (it writes the hand-off secrets and reads the link-signing key) and Key Vault Certificates Officer (it creates the certificates of certificate onboardings); it cannot manage keys or access.')
param principalId string

@description('Let the identity give a mail product Key Vault Secrets User on its onboarding\'s secret (the request\'s mailProductPrincipalId). Grants Role Based Access Control Administrator on the vault, constrained by a condition to assigning and removing Key Vault Secrets User for service principals only.')
param mailProductAccess bool = true

@description('Days a deleted vault or secret stays recoverable (7-90). Fixed when the vault is created; purge protection means nobody can shorten it after a deletion.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Name of the secret holding the key that signs approval links and completion callbacks.')
param linkSigningKeySecretName string = 'link-signing-key'

@description('True when the link-signing key secret already exists (the preprovision hook checks). Then this deployment leaves it alone: writing it again would rotate the key and invalidate every link already sent.')
param linkSigningKeyExists bool = false

@description('Name of the secret holding the API function key.')
param apiFunctionKeySecretName string = 'api-function-key'

@description('True when the API function key already exists; the secret is then left untouched.')
param apiFunctionKeyExists bool = false

@secure()
@description('Value for a new API function key (at least 32 characters). Only used when apiFunctionKeyExists is false.')
param apiFunctionKey string

@secure()
@description('Value for a new link-signing key (at least 32 characters). Only used when linkSigningKeyExists is false.')
param linkSigningKey string

var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var roleBasedAccessControlAdministrator = 'f58310d9-a9f6-439a-9e8d-f62e7b41a168'
// Learn, "Examples to delegate Azure role assignment management with conditions" (constrain roles and
// principal types): the identity may write and delete assignments of Key Vault Secrets User to
// service principals, and no other role, at the vault and below (its secrets).
var onlySecretsUserForServicePrincipals = '((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/write\'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${keyVaultSecretsUser}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\'ServicePrincipal\'})) AND ((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/delete\'})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${keyVaultSecretsUser}} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\'ServicePrincipal\'}))'
var keyVaultCertificatesOfficer = 'a4417e6f-fecd-4de8-b567-7b0420556985'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: The Flex Consumption app runs without VNet integration and reaches the vault over its public endpoint; access is by Entra ID and RBAC only. Add VNet integration and a private endpoint to set defaultAction Deny.
  // checkov:skip=CKV_AZURE_189: Public network access is needed for the same reason as CKV_AZURE_109.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
  }
}

// The mail product's read access to its one secret (onboarding/adapters/rbac.py): the identity makes
// those assignments through Azure Resource Manager, limited by the condition above.
resource secretReaderDelegation 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (mailProductAccess) {
  name: guid(vault.id, principalId, roleBasedAccessControlAdministrator)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleBasedAccessControlAdministrator)
    condition: onlySecretsUserForServicePrincipals
    conditionVersion: '2.0'
  }
}

// Certificate onboardings (credentialType "certificate"): the certificates API has its own data-plane
// role; the private key is then read through the secrets role above.
resource certificatesOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultCertificatesOfficer)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCertificatesOfficer)
  }
}

// Written once. A later deployment with linkSigningKeyExists=true omits the resource, and an
// incremental deployment leaves an omitted resource untouched, so redeploying changes nothing.
resource linkSigningKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!linkSigningKeyExists) {
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov 3.3 does not read the properties of a conditional (= if) resource.
  // checkov:skip=CKV_AZURE_41: The link-signing key is rotated deliberately (docs/deploy.md, "Rotating the link-signing key"); an expiry date would silently break every approval link and callback on that date.
  parent: vault
  name: linkSigningKeySecretName
  properties: {
    contentType: 'text/plain; purpose=hmac-key'
    value: linkSigningKey
    attributes: {
      enabled: true
    }
  }
}

// The key API callers send (x-functions-key or code), checked by the app itself because the API's
// triggers are anonymous at the host (docs/security.md). Written once, like the link-signing key.
resource apiFunctionKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!apiFunctionKeyExists) {
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov 3.3 does not read the properties of a conditional (= if) resource.
  // checkov:skip=CKV_AZURE_41: The API key is rotated deliberately with its callers (docs/deploy.md); an expiry date would lock every caller out on that date.
  parent: vault
  name: apiFunctionKeySecretName
  properties: {
    contentType: 'text/plain; purpose=api-key'
    value: apiFunctionKey
    attributes: {
      enabled: true
    }
  }
}

@description('Name of the vault.')
output name string = vault.name

@description('Resource id of the vault (KEY_VAULT_RESOURCE_ID): the scope of the mail product\'s role on its secret; empty when mailProductAccess is off.')
output resourceId string = mailProductAccess ? vault.id : ''

@description('Vault URI, with a trailing slash (KEY_VAULT_URI).')
output uri string = vault.properties.vaultUri

@description('Versionless URI of the link-signing key, for the app setting\'s Key Vault reference (the app always reads the current version).')
output linkSigningKeySecretUri string = '${vault.properties.vaultUri}secrets/${linkSigningKeySecretName}/'

@description('Versionless URI of the API function key, for the app setting\'s Key Vault reference.')
output apiFunctionKeySecretUri string = '${vault.properties.vaultUri}secrets/${apiFunctionKeySecretName}/'
