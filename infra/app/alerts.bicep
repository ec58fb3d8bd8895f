// Alert rules over the app's telemetry and the action group they notify. docs/operations.md says
// what each alert means and what to do. The queries live in queries/*.kql (shared with the
// workbook); those over the app's operational events start with queries/_events.kql, which reads
// the lines onboarding/opsevents.py writes.
//
// Log search alerts: Microsoft.Insights/scheduledQueryRules, API 2023-12-01
// (https://learn.microsoft.com/azure/templates/microsoft.insights/2023-12-01/scheduledqueryrules).
// Action group: Microsoft.Insights/actionGroups, API 2023-01-01
// (https://learn.microsoft.com/azure/templates/microsoft.insights/2023-01-01/actiongroups).

@description('Prefix of the alert rules\' and action group\'s names.')
param namePrefix string

@description('Azure region of the alert rules (the action group is global).')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Resource id of the Application Insights component the rules query.')
param applicationInsightsId string

@minLength(3)
@description('Address the action group emails when an alert fires (ALERT_EMAIL).')
param alertEmail string

@description('Failed invocations of one function within 15 minutes that raise the function-errors alert. Activities that fail transiently are retried by Durable and fail once per attempt, so a few are expected.')
@minValue(1)
param functionErrorThreshold int = 5

var events = loadTextContent('queries/_events.kql')

// name: rule suffix; severity 0 (critical) .. 4 (verbose); frequency and window as ISO 8601 durations.
var rules = [
  {
    name: 'failed-onboardings'
    displayName: 'Onboarding failed'
    description: 'An onboarding ended with outcome "failed": a step failed for good and what it had created was undone. See docs/operations.md#failed-onboardings.'
    severity: 1
    frequency: 'PT15M'
    window: 'PT15M'
    query: '${events}${loadTextContent('queries/failed-onboardings.kql')}'
    threshold: 0
    aggregation: 'Count'
    measure: null
    dimensions: []
    mute: null
  }
  {
    name: 'overdue-waits'
    displayName: 'Onboarding waiting past its deadline'
    description: 'An onboarding still waits for an admin an hour after its deadline: its orchestration did not wake. See docs/operations.md#a-stuck-onboarding.'
    severity: 2
    frequency: 'PT1H'
    // Reminders log the wait again every CONSENT_REMINDER_HOURS (24 h), so two days always hold
    // the last line of a wait that should have ended.
    window: 'P2D'
    query: '${events}${loadTextContent('queries/overdue-waits.kql')}'
    threshold: 0
    aggregation: 'Count'
    measure: null
    dimensions: []
    // The condition lasts until someone acts: remind once a day, not every hour.
    mute: 'P1D'
  }
  {
    name: 'callbacks-given-up'
    displayName: 'Completion callback given up'
    description: 'The completion callback of an onboarding was refused or could not be delivered after its retries. See docs/operations.md#callback-given-up.'
    severity: 2
    frequency: 'PT15M'
    window: 'PT15M'
    query: '${events}${loadTextContent('queries/callbacks-given-up.kql')}'
    threshold: 0
    aggregation: 'Count'
    measure: null
    dimensions: []
    mute: null
  }
  {
    name: 'credentials-expiring'
    displayName: 'Client secret expiring without rotation'
    description: 'The daily expiry watch found client secrets expiring within CREDENTIAL_EXPIRY_WARNING_DAYS that nobody rotated. See docs/operations.md#credentials-expiring.'
    severity: 2
    // The watch runs once a day (schedules/__init__.py): look once a day at that day's lines.
    frequency: 'P1D'
    window: 'P1D'
    query: '${events}${loadTextContent('queries/credentials-expiring.kql')}'
    threshold: 0
    aggregation: 'Count'
    measure: null
    dimensions: []
    mute: null
  }
  {
    name: 'function-errors'
    displayName: 'Function errors'
    description: 'A function failed more than the threshold within 15 minutes. See docs/operations.md#function-errors.'
    severity: 1
    frequency: 'PT5M'
    window: 'PT15M'
    query: loadTextContent('queries/function-errors.kql')
    threshold: functionErrorThreshold
    aggregation: 'Total'
    measure: 'failures'
    // One alert per failing function.
    dimensions: [
      {
        name: 'operation_Name'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
    mute: null
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${namePrefix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'mailonboard'
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: 'alert-${namePrefix}-${rule.name}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        applicationInsightsId
      ]
      evaluationFrequency: rule.frequency
      windowSize: rule.window
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: rule.aggregation
            metricMeasureColumn: rule.measure
            dimensions: rule.dimensions
            operator: 'GreaterThan'
            threshold: rule.threshold
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      // Each firing is a new event to act on (one more failed onboarding), not a condition that
      // clears by itself, so alerts are not auto-resolved.
      autoMitigate: false
      muteActionsDuration: rule.mute
      actions: {
        actionGroups: [
          actionGroup.id
        ]
      }
    }
  }
]

@description('Resource id of the action group.')
output actionGroupId string = actionGroup.id

@description('Names of the alert rules.')
output alertRuleNames array = [for (rule, i) in rules: alertRules[i].name]
