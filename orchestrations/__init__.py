"""placeholder: filled by the onboarding workflow"""

import azure.durable_functions as df

blueprint = df.Blueprint()
