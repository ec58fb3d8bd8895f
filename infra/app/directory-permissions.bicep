// Microsoft Graph and Exchange Online application permissions of the function app's managed
// identity, declared with the Microsoft Graph Bicep extension (appRoleAssignedTo). Deploying this
// module needs a deployer who may grant application permissions: Privileged Role Administrator or
// Global Administrator. The Exchange Administrator directory role cannot be declared here (the
// extension has no directory role assignment type): scripts/azd/grant-directory-permissions.sh
// assigns it, and also grants these permissions when this module is switched off.
extension microsoftGraphV1

@description('Object id of the managed identity\'s service principal, the principal that receives the permissions.')
param principalId string

@description('Microsoft Graph application permissions (app role values) to grant, e.g. Application.ReadWrite.OwnedBy.')
param graphAppRoles array

@description('Office 365 Exchange Online application permissions (app role values) to grant, e.g. Exchange.ManageAsApp.')
param exchangeAppRoles array

// Well-known application ids, the same in every tenant.
var microsoftGraphAppId = '00000003-0000-0000-c000-000000000000'
var exchangeOnlineAppId = '00000002-0000-0ff1-ce00-000000000000'

resource microsoftGraph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: microsoftGraphAppId
}

resource exchangeOnline 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: exchangeOnlineAppId
}

// App role ids are looked up by value from the resource's service principal rather than written
// here, so a typo fails the deployment instead of granting the wrong permission.
resource graphGrants 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for role in graphAppRoles: {
    principalId: principalId
    resourceId: microsoftGraph.id
    appRoleId: filter(microsoftGraph.appRoles, r => r.value == role && contains(r.allowedMemberTypes, 'Application'))[0].id
  }
]

resource exchangeGrants 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for role in exchangeAppRoles: {
    principalId: principalId
    resourceId: exchangeOnline.id
    appRoleId: filter(exchangeOnline.appRoles, r => r.value == role && contains(r.allowedMemberTypes, 'Application'))[0].id
  }
]

@description('Microsoft Graph permissions granted.')
output graphAppRoles array = graphAppRoles

@description('Exchange Online permissions granted.')
output exchangeAppRoles array = exchangeAppRoles
