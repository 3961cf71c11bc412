"""On-prem sources: catalog trees and listener logs."""
