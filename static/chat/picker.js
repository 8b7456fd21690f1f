// The model and mode picker of the composer (filled in by step 2); what a send carries.
export function composerChoice() {
  return {};
}
