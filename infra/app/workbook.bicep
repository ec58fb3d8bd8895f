// An Azure Monitor workbook over the app's telemetry: onboardings by outcome over time, step
// durations, mailboxes per state, Exchange throttling and callback failures. The queries are the
// files in queries/ (those over operational events start with queries/_events.kql, like the alerts).
//
// Microsoft.Insights/workbooks, API 2023-06-01
// (https://learn.microsoft.com/azure/templates/microsoft.insights/2023-06-01/workbooks);
// serializedData is the workbook's gallery template JSON (version Notebook/1.0).

@description('Display name of the workbook in the portal.')
param displayName string

@description('Azure region of the workbook.')
param location string

@description('Tags applied to the workbook.')
param tags object = {}

@description('Resource id of the Application Insights component the workbook queries.')
param applicationInsightsId string

var events = loadTextContent('queries/_events.kql')

// One chart or grid per question an operator asks; the order is the order on the page. Each reads
// the time range the page's parameter sets.
var charts = [
  {
    type: 3
    name: 'outcomes'
    content: {
      version: 'KqlItem/1.0'
      title: 'Onboardings by outcome'
      query: '${events}${loadTextContent('queries/outcomes-over-time.kql')}'
      size: 0
      queryType: 0
      resourceType: 'microsoft.insights/components'
      visualization: 'timechart'
      timeContextFromParameter: 'TimeRange'
      timeContext: {
        durationMs: 604800000
      }
    }
  }
  {
    type: 3
    name: 'step-durations'
    content: {
      version: 'KqlItem/1.0'
      title: 'Step durations (activity invocations, ms)'
      query: loadTextContent('queries/step-durations.kql')
      size: 0
      queryType: 0
      resourceType: 'microsoft.insights/components'
      visualization: 'table'
      timeContextFromParameter: 'TimeRange'
      timeContext: {
        durationMs: 604800000
      }
    }
  }
  {
    type: 3
    name: 'mailbox-states'
    content: {
      version: 'KqlItem/1.0'
      title: 'Mailboxes per final state'
      query: '${events}${loadTextContent('queries/mailbox-states.kql')}'
      size: 0
      queryType: 0
      resourceType: 'microsoft.insights/components'
      visualization: 'barchart'
      timeContextFromParameter: 'TimeRange'
      timeContext: {
        durationMs: 604800000
      }
    }
  }
  {
    type: 3
    name: 'exchange-throttling'
    content: {
      version: 'KqlItem/1.0'
      title: 'Exchange Online throttling (429/503 answers per cmdlet)'
      query: '${events}${loadTextContent('queries/exchange-throttling.kql')}'
      size: 0
      queryType: 0
      resourceType: 'microsoft.insights/components'
      visualization: 'barchart'
      timeContextFromParameter: 'TimeRange'
      timeContext: {
        durationMs: 604800000
      }
    }
  }
  {
    type: 3
    name: 'callback-failures'
    content: {
      version: 'KqlItem/1.0'
      title: 'Completion callbacks given up'
      query: '${events}${loadTextContent('queries/callback-failures.kql')}'
      size: 0
      queryType: 0
      resourceType: 'microsoft.insights/components'
      visualization: 'barchart'
      timeContextFromParameter: 'TimeRange'
      timeContext: {
        durationMs: 604800000
      }
    }
  }
]

var timeRange = {
  type: 9
  name: 'parameters'
  content: {
    version: 'KqlParameterItem/1.0'
    parameters: [
      {
        id: 'time-range'
        version: 'KqlParameterItem/1.0'
        name: 'TimeRange'
        label: 'Time range'
        type: 4
        isRequired: true
        value: {
          durationMs: 604800000 // 7 days
        }
        typeSettings: {
          selectableValues: [
            {
              durationMs: 86400000
            }
            {
              durationMs: 604800000
            }
            {
              durationMs: 2592000000
            }
          ]
        }
      }
    ]
  }
}

var heading = {
  type: 1
  name: 'heading'
  content: {
    json: '## Mailbox OAuth onboarding\nWhat the alerts mean and what to do: docs/operations.md in the repository.'
  }
}

var workbook = {
  version: 'Notebook/1.0'
  items: concat([heading, timeRange], charts)
  fallbackResourceIds: [
    applicationInsightsId
  ]
  '$schema': 'https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json'
}

resource dashboard 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; this one is stable per component, so redeploying updates it.
  name: guid(applicationInsightsId, 'mail-onboarding-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsId
    version: '1.0'
    serializedData: string(workbook)
  }
}

@description('Resource id of the workbook.')
output id string = dashboard.id
