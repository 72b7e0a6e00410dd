/**
 * What the plots throw: data that cannot make the asked plot (nothing to draw, a field missing),
 * or no font to draw text with. Messages name the field or the file, never the data.
 */
export class PlotError extends Error {
  override readonly name = 'PlotError';
}
