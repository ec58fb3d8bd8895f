// The function app's only identity. Everything it may do (storage, Key Vault, Microsoft Graph,
// Exchange Online) is granted to this principal and nothing else, so revoking it is one deletion.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region of the identity.')
param location string

@description('Tags applied to the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

@description('Resource id of the identity (for the function app and Flex deployment storage).')
output resourceId string = identity.id

@description('Client (application) id: AZURE_CLIENT_ID and AzureWebJobsStorage__clientId.')
output clientId string = identity.properties.clientId

@description('Object id of the identity\'s service principal: the principal of every role assignment.')
output principalId string = identity.properties.principalId

@description('Name of the identity.')
output name string = identity.name
