// The operators' workbook (Azure portal > Application Insights appi-dsr-… > Workbooks, or Azure
// Monitor > Workbooks): DSR intake, phases, outcomes, Graph errors and throttling, legal
// deadlines, callbacks, queue rejections and SAS lifetime, all read from the app's structured
// log lines (`event key=value …`) in the component's `traces` table. docs/operations.md
// explains every panel and has the same queries to paste into Logs.
//
// The content lives in workbook.json next to this file so that it stays readable and diffable;
// tests/infra/test_workbook.py checks that its queries name only events the code logs. It reads
// telemetry only: no identity, no role assignment, no secret.

@description('Application Insights component the workbook belongs to and queries.')
param applicationInsightsName string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Title shown in the portal. Unique per resource group and component.')
param displayName string = 'DSR export operations'

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// workbook.json names its resource through this placeholder (`fallbackResourceIds`: what the
// queries run against when the workbook is opened outside the component, e.g. from Azure
// Monitor > Workbooks). Filled in here so the file holds no subscription or resource group.
var resourcePlaceholder = '__APPLICATION_INSIGHTS_ID__'

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; derived from the component so re-deploying updates it.
  name: guid(appInsights.id, 'dsr-export-operations-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsights.id
    serializedData: replace(loadTextContent('workbook.json'), resourcePlaceholder, appInsights.id)
    version: 'Notebook/1.0'
  }
}

output id string = workbook.id
output name string = workbook.name
