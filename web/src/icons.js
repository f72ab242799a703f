// Small inline icons (16px, currentColor); `hydrateIcons` fills every [data-icon] placeholder.
const paths = {
  file: '<path d="M4 1.5h5l3.5 3.5v9.5h-8.5z" fill="none" stroke="currentColor"/><path d="M9 1.5v3.5h3.5" fill="none" stroke="currentColor"/>',
  folder: '<path d="M1.5 3.5h4.5l1.5 1.5h7v8.5h-13z" fill="currentColor" fill-opacity=".18" stroke="currentColor"/>',
  folderOpen: '<path d="M1.5 3.5h4.5l1.5 1.5h6v2" fill="none" stroke="currentColor"/><path d="M1.5 13.5v-10M1.5 13.5l2-6h11.5l-2 6z" fill="currentColor" fill-opacity=".18" stroke="currentColor" stroke-linejoin="round"/>',
  link: '<path d="M6.5 9.5l3-3M7 4.5l1-1a2.5 2.5 0 013.5 3.5l-1 1M9 11.5l-1 1a2.5 2.5 0 01-3.5-3.5l1-1" fill="none" stroke="currentColor" stroke-linecap="round"/>',
  chevron: '<path d="M6 4l4 4-4 4" fill="none" stroke="currentColor" stroke-width="1.5" stroke-linecap="round" stroke-linejoin="round"/>',
  newFile: '<path d="M4 1.5h5l3.5 3.5v3M9 1.5v3.5h3.5M8 14.5h-4v-13" fill="none" stroke="currentColor"/><path d="M12 10v5M9.5 12.5h5" stroke="currentColor" stroke-linecap="round"/>',
  newFolder: '<path d="M8 13.5h-6.5v-10h4.5l1.5 1.5h7v3" fill="none" stroke="currentColor"/><path d="M12 10v5M9.5 12.5h5" stroke="currentColor" stroke-linecap="round"/>',
  rename: '<path d="M10.5 2.5l3 3-8 8h-3v-3z" fill="none" stroke="currentColor" stroke-linejoin="round"/><path d="M9 4l3 3" stroke="currentColor"/>',
  trash: '<path d="M2.5 4h11M6 4V2.5h4V4M4 4l.7 10h6.6L12 4M6.5 6.5v5M9.5 6.5v5" fill="none" stroke="currentColor" stroke-linecap="round"/>',
  refresh: '<path d="M13 8a5 5 0 11-1.5-3.5M13 2v3h-3" fill="none" stroke="currentColor" stroke-linecap="round" stroke-linejoin="round"/>',
  download: '<path d="M8 2v8M4.5 7l3.5 3.5L11.5 7M2.5 13.5h11" fill="none" stroke="currentColor" stroke-linecap="round" stroke-linejoin="round"/>',
  save: '<path d="M2.5 2.5h9l2 2v9h-11z" fill="none" stroke="currentColor" stroke-linejoin="round"/><path d="M5 2.5v3.5h5v-3.5M5 13.5v-4h6v4" fill="none" stroke="currentColor"/>',
  binary: '<path d="M4 1.5h5l3.5 3.5v9.5h-8.5z" fill="none" stroke="currentColor"/><path d="M6 7.5v4M10 7.5v4M7.5 7.5h1v4h-1z" fill="none" stroke="currentColor" stroke-width=".8"/>',
  lock: '<rect x="3" y="7" width="10" height="7" rx="1" fill="none" stroke="currentColor"/><path d="M5 7V5a3 3 0 016 0v2" fill="none" stroke="currentColor"/>',
  play: '<path d="M4.5 2.5v11l9-5.5z" fill="currentColor" fill-opacity=".18" stroke="currentColor" stroke-linejoin="round"/>',
  stop: '<rect x="3.5" y="3.5" width="9" height="9" rx="1" fill="currentColor" fill-opacity=".18" stroke="currentColor"/>',
  back: '<path d="M10 3L5 8l5 5" fill="none" stroke="currentColor" stroke-width="1.5" stroke-linecap="round" stroke-linejoin="round"/>',
  workflow: '<circle cx="3.5" cy="8" r="2" fill="none" stroke="currentColor"/><circle cx="12.5" cy="3.5" r="2" fill="none" stroke="currentColor"/><circle cx="12.5" cy="12.5" r="2" fill="none" stroke="currentColor"/><path d="M5.3 7l5.4-2.6M5.3 9l5.4 2.6" stroke="currentColor"/>',
  close: '<path d="M4 4l8 8M12 4l-8 8" stroke="currentColor" stroke-width="1.4" stroke-linecap="round"/>',
};

export function icon(name) {
  return `<svg class="svg-icon" viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false">${paths[name] || ""}</svg>`;
}

export function hydrateIcons(root = document) {
  for (const element of root.querySelectorAll("[data-icon]")) {
    if (!element.firstChild) element.innerHTML = icon(element.dataset.icon);
  }
}
